package schema

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// AppendHealthJSON writes health data as JSON with the SOAP answer's element
// names (GET /api/v1/health and `opmond query --health`); absent elements are
// absent, doubles printed as in the SOAP answer.
func AppendHealthJSON(b []byte, h *HealthData) []byte {
	b = append(b, `{"monitoringStartupTimestamp":`...)
	b = strconv.AppendInt(b, h.MonitoringStartupMs, 10)
	b = append(b, `,"statisticsPeriodSeconds":`...)
	b = strconv.AppendInt(b, int64(h.StatisticsPeriodSeconds), 10)
	b = append(b, `,"servicesEvents":[`...)
	for i, s := range h.Services {
		if i > 0 {
			b = append(b, ',')
		}
		p := s.Service.Provider
		b = append(b, `{"service":{"xRoadInstance":`...)
		b = AppendJSONString(b, p.Instance)
		b = append(b, `,"memberClass":`...)
		b = AppendJSONString(b, p.MemberClass)
		b = append(b, `,"memberCode":`...)
		b = AppendJSONString(b, p.MemberCode)
		if p.HasSubsystem {
			b = append(b, `,"subsystemCode":`...)
			b = AppendJSONString(b, p.Subsystem)
		}
		b = append(b, `,"serviceCode":`...)
		b = AppendJSONString(b, s.Service.Code)
		if s.Service.HasVersion {
			b = append(b, `,"serviceVersion":`...)
			b = AppendJSONString(b, s.Service.Version)
		}
		b = append(b, '}')
		if s.HasLastSuccessful {
			b = append(b, `,"lastSuccessfulRequestTimestamp":`...)
			b = strconv.AppendInt(b, s.LastSuccessfulMs, 10)
		}
		if s.HasLastUnsuccessful {
			b = append(b, `,"lastUnsuccessfulRequestTimestamp":`...)
			b = strconv.AppendInt(b, s.LastUnsuccessfulMs, 10)
		}
		if s.HasServiceType {
			b = append(b, `,"serviceType":`...)
			b = AppendJSONString(b, s.ServiceType)
		}
		b = append(b, `,"lastPeriodStatistics":{"successfulRequestCount":`...)
		b = strconv.AppendInt(b, int64(s.SuccessfulCount), 10)
		b = append(b, `,"unsuccessfulRequestCount":`...)
		b = strconv.AppendInt(b, int64(s.UnsuccessfulCount), 10)
		for _, g := range s.StatGroups() {
			b = appendStatJSON(b, g)
		}
		b = append(b, "}}"...)
	}
	return append(b, "]}"...)
}

func appendStatJSON(b []byte, g StatGroup) []byte {
	b = append(b, `,"`+g.Names[0]+`":`...)
	b = strconv.AppendInt(b, g.Stat.Min, 10)
	b = append(b, `,"`+g.Names[1]+`":`...)
	b = append(b, FormatJavaDouble(g.Stat.Avg)...)
	b = append(b, `,"`+g.Names[2]+`":`...)
	b = strconv.AppendInt(b, g.Stat.Max, 10)
	b = append(b, `,"`+g.Names[3]+`":`...)
	return append(b, FormatJavaDouble(g.Stat.StdDev)...)
}

// ParseHealthAnswer reads a getSecurityServerHealthData answer by local names.
func ParseHealthAnswer(data []byte) (*HealthData, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	h := &HealthData{}
	var path []string
	var text strings.Builder
	var cur *ServiceEvents
	found := false
	for {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) && found {
				return h, nil
			}
			return nil, fmt.Errorf("answer is not a health data response: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			path = append(path, t.Name.Local)
			text.Reset()
			switch t.Name.Local {
			case "getSecurityServerHealthDataResponse":
				found = true
			case "serviceEvents":
				h.Services = append(h.Services, ServiceEvents{})
				cur = &h.Services[len(h.Services)-1]
			}
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			v := strings.TrimSpace(text.String())
			text.Reset()
			n := t.Name.Local
			inService := len(path) >= 2 && path[len(path)-2] == "service"
			path = path[:len(path)-1]
			i, _ := strconv.ParseInt(v, 10, 64)
			f, _ := strconv.ParseFloat(v, 64)
			if n == "monitoringStartupTimestamp" {
				h.MonitoringStartupMs = i
				continue
			}
			if n == "statisticsPeriodSeconds" {
				h.StatisticsPeriodSeconds = int(i)
				continue
			}
			if cur == nil {
				continue
			}
			if inService {
				sv := &cur.Service
				switch n {
				case "xRoadInstance":
					sv.Provider.Instance = v
				case "memberClass":
					sv.Provider.MemberClass = v
				case "memberCode":
					sv.Provider.MemberCode = v
				case "subsystemCode":
					sv.Provider.Subsystem, sv.Provider.HasSubsystem = v, true
				case "serviceCode":
					sv.Code = v
				case "serviceVersion":
					sv.Version, sv.HasVersion = v, true
				}
				continue
			}
			if g, part, ok := StatElement(n); ok {
				cur.Group(g).SetPart(part, i, f)
				continue
			}
			switch n {
			case "lastSuccessfulRequestTimestamp":
				cur.LastSuccessfulMs, cur.HasLastSuccessful = i, true
			case "lastUnsuccessfulRequestTimestamp":
				cur.LastUnsuccessfulMs, cur.HasLastUnsuccessful = i, true
			case "serviceType":
				cur.ServiceType, cur.HasServiceType = v, true
			case "successfulRequestCount":
				cur.SuccessfulCount = int(i)
			case "unsuccessfulRequestCount":
				cur.UnsuccessfulCount = int(i)
			}
		}
	}
}
