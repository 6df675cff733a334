package schema

import (
	"encoding/json"
	"testing"
)

// TestHealthJSON: the JSON shape of health data uses the SOAP answer's
// element names and leaves out what the answer leaves out.
func TestHealthJSON(t *testing.T) {
	h := &HealthData{MonitoringStartupMs: 5, StatisticsPeriodSeconds: 600, Services: []ServiceEvents{
		{Service: ServiceID{Provider: ClientID{Instance: "DEV", MemberClass: "COM", MemberCode: "1234", Subsystem: "Catalog", HasSubsystem: true}, Code: "products"},
			LastSuccessfulMs: 7, HasLastSuccessful: true, ServiceType: "REST", HasServiceType: true, SuccessfulCount: 3,
			RequestDuration: Stat{Min: 91, Max: 121, Avg: 106, StdDev: 15},
			ResponseSize:    &Stat{Min: 5120, Max: 5180, Avg: 5150, StdDev: 30}},
		{Service: ServiceID{Provider: ClientID{Instance: "DEV", MemberClass: "COM", MemberCode: "1234"}, Code: "getPrices", Version: "v1", HasVersion: true},
			UnsuccessfulCount: 2, RequestDuration: Stat{Min: 1}},
	}}
	want := `{"monitoringStartupTimestamp":5,"statisticsPeriodSeconds":600,"servicesEvents":[` +
		`{"service":{"xRoadInstance":"DEV","memberClass":"COM","memberCode":"1234","subsystemCode":"Catalog","serviceCode":"products"},` +
		`"lastSuccessfulRequestTimestamp":7,"serviceType":"REST","lastPeriodStatistics":{"successfulRequestCount":3,"unsuccessfulRequestCount":0,` +
		`"requestMinDuration":91,"requestAverageDuration":106.0,"requestMaxDuration":121,"requestDurationStdDev":15.0,` +
		`"responseMinSize":5120,"responseAverageSize":5150.0,"responseMaxSize":5180,"responseSizeStdDev":30.0}},` +
		`{"service":{"xRoadInstance":"DEV","memberClass":"COM","memberCode":"1234","serviceCode":"getPrices","serviceVersion":"v1"},` +
		`"lastPeriodStatistics":{"successfulRequestCount":0,"unsuccessfulRequestCount":2}}]}`
	got := string(AppendHealthJSON(nil, h))
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Error("not valid JSON")
	}
}
