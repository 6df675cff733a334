package schema

// HealthData is the content of a getSecurityServerHealthData answer
// (opmon-protocol.md §3.8, §5).
type HealthData struct {
	MonitoringStartupMs     int64
	StatisticsPeriodSeconds int
	Services                []ServiceEvents // sorted by Service.String()
}

// ServiceEvents is the health of one service.
type ServiceEvents struct {
	Service ServiceID

	LastSuccessfulMs    int64
	HasLastSuccessful   bool
	LastUnsuccessfulMs  int64
	HasLastUnsuccessful bool
	ServiceType         string
	HasServiceType      bool
	SuccessfulCount     int
	UnsuccessfulCount   int
	RequestDuration     Stat  // emitted only when SuccessfulCount > 0
	RequestSize         *Stat // nil: no successful record ever carried requestSize
	ResponseSize        *Stat // nil: likewise for responseSize
}

// Stat is min/avg/max/sample-std-dev of a sample set over the window.
type Stat struct {
	Min, Max    int64
	Avg, StdDev float64
}
