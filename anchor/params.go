package anchor

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/opmond/opmond/schema"
)

// maxFileSize bounds every file read, so a stray huge file cannot exhaust
// memory. Real shared parameters of large instances are a few MiB.
const maxFileSize = 64 << 20

// readFile reads at most maxFileSize bytes of path.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

// metadata is the part of a <file>.metadata file (§3.2) the reader uses.
type metadata struct {
	ExpirationDate       string `json:"expirationDate"`
	ConfigurationVersion string `json:"configurationVersion"`
}

// parseMetadata returns the expiry in the metadata (zero: none given).
func parseMetadata(data []byte) (expiry time.Time, version string, err error) {
	var m metadata
	if err := json.Unmarshal(data, &m); err != nil {
		return time.Time{}, "", err
	}
	if m.ExpirationDate != "" {
		if expiry, err = parseDateTime(m.ExpirationDate); err != nil {
			return time.Time{}, "", fmt.Errorf("expirationDate: %w", err)
		}
	}
	return expiry, m.ConfigurationVersion, nil
}

// checkRoot rejects a document whose root is not xroad.xsd's conf: the
// root name does not tell shared from private parameters, but a wrong one
// means the file is not global configuration at all.
func checkRoot(n xml.Name) error {
	if n.Space != nsXRoad || n.Local != "conf" {
		return fmt.Errorf("root element is {%s}%s, want {%s}conf", n.Space, n.Local, nsXRoad)
	}
	return nil
}

// sharedParams is the part of shared parameters the daemon needs (§4.1). One
// struct reads versions 2 to 6: unknown elements are ignored.
type sharedParams struct {
	XMLName            xml.Name
	InstanceIdentifier string `xml:"instanceIdentifier"`
	Members            []struct {
		ID          string `xml:"id,attr"`
		MemberClass string `xml:"memberClass>code"`
		MemberCode  string `xml:"memberCode"`
	} `xml:"member"`
	SecurityServers []struct {
		Owner      string `xml:"owner"`
		ServerCode string `xml:"serverCode"`
	} `xml:"securityServer"`
}

// parseShared returns the security servers of a shared parameters file keyed
// by server id, with their owner members. An owner that does not refer to a
// member rejects the file, as upstream's schema binding does.
func parseShared(data []byte) (instance string, owners map[schema.ServerID]schema.ClientID, err error) {
	var p sharedParams
	if err := xml.Unmarshal(data, &p); err != nil {
		return "", nil, err
	}
	if err := checkRoot(p.XMLName); err != nil {
		return "", nil, err
	}
	if p.InstanceIdentifier == "" {
		return "", nil, errors.New("no instanceIdentifier")
	}
	type member struct{ class, code string }
	members := make(map[string]member, len(p.Members))
	for _, m := range p.Members {
		m.ID = strings.TrimSpace(m.ID)
		if m.ID == "" {
			return "", nil, errors.New("member without id")
		}
		if _, dup := members[m.ID]; dup {
			return "", nil, fmt.Errorf("duplicate member id %q", m.ID)
		}
		members[m.ID] = member{m.MemberClass, m.MemberCode}
	}
	owners = make(map[schema.ServerID]schema.ClientID, len(p.SecurityServers))
	for _, s := range p.SecurityServers {
		m, ok := members[strings.TrimSpace(s.Owner)]
		if !ok {
			return "", nil, fmt.Errorf("security server %q: owner %q is not a member", s.ServerCode, s.Owner)
		}
		if m.class == "" || m.code == "" || s.ServerCode == "" {
			return "", nil, fmt.Errorf("security server %q: empty member class, member code or server code", s.ServerCode)
		}
		id := schema.ServerID{Instance: p.InstanceIdentifier, MemberClass: m.class, MemberCode: m.code, ServerCode: s.ServerCode}
		owners[id] = id.Owner()
	}
	return p.InstanceIdentifier, owners, nil
}

// privateParams is the part of private parameters the reader checks (§4.3);
// their presence is what validity needs.
type privateParams struct {
	XMLName            xml.Name
	InstanceIdentifier string `xml:"instanceIdentifier"`
}

func parsePrivate(data []byte) (instance string, err error) {
	var p privateParams
	if err := xml.Unmarshal(data, &p); err != nil {
		return "", err
	}
	if err := checkRoot(p.XMLName); err != nil {
		return "", err
	}
	if p.InstanceIdentifier == "" {
		return "", errors.New("no instanceIdentifier")
	}
	return p.InstanceIdentifier, nil
}

// clientIDXML is an X-Road client identifier: children and the objectType
// attribute are qualified with the identifiers namespace.
type clientIDXML struct {
	ObjectType    string  `xml:"http://x-road.eu/xsd/identifiers objectType,attr"`
	XRoadInstance string  `xml:"http://x-road.eu/xsd/identifiers xRoadInstance"`
	MemberClass   string  `xml:"http://x-road.eu/xsd/identifiers memberClass"`
	MemberCode    string  `xml:"http://x-road.eu/xsd/identifiers memberCode"`
	SubsystemCode *string `xml:"http://x-road.eu/xsd/identifiers subsystemCode"`
}

type monitoringParams struct {
	XMLName          xml.Name
	MonitoringClient *struct {
		ID *clientIDXML `xml:"monitoringClientId"`
	} `xml:"monitoringClient"`
}

// parseMonitoring returns the central monitoring client (§4.2); ok is false
// for a valid file with an empty monitoringClient.
func parseMonitoring(data []byte) (id schema.ClientID, ok bool, err error) {
	var p monitoringParams
	if err := xml.Unmarshal(data, &p); err != nil {
		return id, false, err
	}
	if err := checkRoot(p.XMLName); err != nil {
		return id, false, err
	}
	if p.MonitoringClient == nil {
		return id, false, errors.New("no monitoringClient")
	}
	x := p.MonitoringClient.ID
	if x == nil {
		return id, false, nil
	}
	if x.XRoadInstance == "" || x.MemberClass == "" || x.MemberCode == "" {
		return id, false, errors.New("monitoringClientId lacks xRoadInstance, memberClass or memberCode")
	}
	id = schema.ClientID{Instance: x.XRoadInstance, MemberClass: x.MemberClass, MemberCode: x.MemberCode}
	switch x.ObjectType {
	case "MEMBER":
		if x.SubsystemCode != nil {
			return schema.ClientID{}, false, errors.New("monitoringClientId of type MEMBER has a subsystemCode")
		}
	case "SUBSYSTEM":
		if x.SubsystemCode == nil || *x.SubsystemCode == "" {
			return schema.ClientID{}, false, errors.New("monitoringClientId of type SUBSYSTEM has no subsystemCode")
		}
		id.Subsystem, id.HasSubsystem = *x.SubsystemCode, true
	default:
		return schema.ClientID{}, false, fmt.Errorf("monitoringClientId has objectType %q, want MEMBER or SUBSYSTEM", x.ObjectType)
	}
	return id, true, nil
}

// instanceDirName is the folder name of an instance: Java's form-URL
// encoding, which the configuration client uses (§3.1). Ordinary instance
// identifiers are unchanged.
func instanceDirName(instance string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(instance); i++ {
		c := instance[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '-', c == '*', c == '_':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}
