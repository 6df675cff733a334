package schema

import (
	"errors"
	"fmt"
	"strings"
)

// ClientID is an X-Road member (HasSubsystem false) or subsystem identifier.
type ClientID struct {
	Instance     string
	MemberClass  string
	MemberCode   string
	Subsystem    string
	HasSubsystem bool
}

// ObjectType is "MEMBER" or "SUBSYSTEM".
func (c ClientID) ObjectType() string {
	if c.HasSubsystem {
		return "SUBSYSTEM"
	}
	return "MEMBER"
}

// Member returns the member part of the identifier.
func (c ClientID) Member() ClientID {
	return ClientID{Instance: c.Instance, MemberClass: c.MemberClass, MemberCode: c.MemberCode}
}

// String is the slash form: INSTANCE/CLASS/CODE[/SUBSYSTEM].
func (c ClientID) String() string {
	s := c.Instance + "/" + c.MemberClass + "/" + c.MemberCode
	if c.HasSubsystem {
		s += "/" + c.Subsystem
	}
	return s
}

// ServerID identifies a security server: owner member plus server code.
type ServerID struct {
	Instance    string
	MemberClass string
	MemberCode  string
	ServerCode  string
}

// Owner returns the owner member implied by the identifier.
func (s ServerID) Owner() ClientID {
	return ClientID{Instance: s.Instance, MemberClass: s.MemberClass, MemberCode: s.MemberCode}
}

// String is the slash form INSTANCE/CLASS/CODE/SERVERCODE.
func (s ServerID) String() string {
	return s.Instance + "/" + s.MemberClass + "/" + s.MemberCode + "/" + s.ServerCode
}

// ServiceID identifies a service: provider plus service code and optional version.
type ServiceID struct {
	Provider   ClientID
	Code       string
	Version    string
	HasVersion bool
}

// String is the slash form INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICECODE[/VERSION],
// with an empty subsystem segment for a member-level provider.
func (s ServiceID) String() string {
	p := s.Provider
	str := p.Instance + "/" + p.MemberClass + "/" + p.MemberCode + "/" + p.Subsystem + "/" + s.Code
	if s.HasVersion {
		str += "/" + s.Version
	}
	return str
}

// ErrBadID is wrapped by every identifier parse error.
var ErrBadID = errors.New("malformed identifier")

func splitID(s string, min, max int, what string) ([]string, error) {
	parts := strings.Split(s, "/")
	if len(parts) < min || len(parts) > max {
		return nil, fmt.Errorf("%w: %q is not a %s identifier", ErrBadID, s, what)
	}
	return parts, nil
}

func nonBlank(s, what string, parts ...string) error {
	for _, p := range parts {
		if strings.TrimSpace(p) == "" {
			return fmt.Errorf("%w: %q has an empty part (%s)", ErrBadID, s, what)
		}
	}
	return nil
}

// ParseClientID parses INSTANCE/CLASS/CODE or INSTANCE/CLASS/CODE/SUBSYSTEM.
func ParseClientID(s string) (ClientID, error) {
	p, err := splitID(s, 3, 4, "member or subsystem")
	if err != nil {
		return ClientID{}, err
	}
	if err := nonBlank(s, "member or subsystem", p...); err != nil {
		return ClientID{}, err
	}
	id := ClientID{Instance: p[0], MemberClass: p[1], MemberCode: p[2]}
	if len(p) == 4 {
		id.Subsystem, id.HasSubsystem = p[3], true
	}
	return id, nil
}

// ParseServerID parses INSTANCE/CLASS/CODE/SERVERCODE.
func ParseServerID(s string) (ServerID, error) {
	p, err := splitID(s, 4, 4, "security server")
	if err != nil {
		return ServerID{}, err
	}
	if err := nonBlank(s, "security server", p...); err != nil {
		return ServerID{}, err
	}
	return ServerID{Instance: p[0], MemberClass: p[1], MemberCode: p[2], ServerCode: p[3]}, nil
}

// ParseServiceID parses INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICECODE[/VERSION]
// where SUBSYSTEM may be empty for a member-level provider.
func ParseServiceID(s string) (ServiceID, error) {
	p, err := splitID(s, 5, 6, "service")
	if err != nil {
		return ServiceID{}, err
	}
	if err := nonBlank(s, "service", p[0], p[1], p[2], p[4]); err != nil {
		return ServiceID{}, err
	}
	id := ServiceID{Provider: ClientID{Instance: p[0], MemberClass: p[1], MemberCode: p[2]}, Code: p[4]}
	if p[3] != "" {
		id.Provider.Subsystem, id.Provider.HasSubsystem = p[3], true
	}
	if len(p) == 6 {
		if p[5] == "" {
			return ServiceID{}, fmt.Errorf("%w: %q has an empty version", ErrBadID, s)
		}
		id.Version, id.HasVersion = p[5], true
	}
	return id, nil
}

// Service returns the record's service identifier (ok=false when the record
// lacks a non-blank provider instance, class, code or service code — such
// records do not feed health statistics, §5.1).
func (r *Record) Service() (ServiceID, bool) {
	p, ok := r.Provider()
	if !ok || strings.TrimSpace(p.Instance) == "" || strings.TrimSpace(p.MemberClass) == "" ||
		strings.TrimSpace(p.MemberCode) == "" || !r.Has.Has(FServiceCode) || strings.TrimSpace(r.Str(FServiceCode)) == "" {
		return ServiceID{}, false
	}
	id := ServiceID{Provider: p, Code: r.Str(FServiceCode)}
	if r.Has.Has(FServiceVersion) {
		id.Version, id.HasVersion = r.Str(FServiceVersion), true
	}
	return id, true
}
