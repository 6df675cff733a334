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

// The statistics groups of lastPeriodStatistics, in XSD order.
const (
	GroupRequestDuration = iota
	GroupRequestSize
	GroupResponseSize
)

// StatNames are the element names of each group: min, average, max,
// std-dev, in XSD order.
var StatNames = [3][4]string{
	statNames("request", "Duration"),
	statNames("request", "Size"),
	statNames("response", "Size"),
}

func statNames(dir, what string) [4]string {
	return [4]string{dir + "Min" + what, dir + "Average" + what, dir + "Max" + what, dir + what + "StdDev"}
}

var statElements = func() map[string][2]int {
	m := map[string][2]int{}
	for g, names := range StatNames {
		for p, n := range names {
			m[n] = [2]int{g, p}
		}
	}
	return m
}()

// StatElement locates a statistics element name: its group and part
// (0 min, 1 average, 2 max, 3 std-dev).
func StatElement(name string) (group, part int, ok bool) {
	gp, ok := statElements[name]
	return gp[0], gp[1], ok
}

// StatGroup is one group an answer carries.
type StatGroup struct {
	Names *[4]string
	Stat  *Stat
}

// StatGroups returns the groups an answer carries (§3.8): none unless
// SuccessfulCount > 0; then the duration, and each size group that is set.
func (s *ServiceEvents) StatGroups() []StatGroup {
	if s.SuccessfulCount <= 0 {
		return nil
	}
	out := []StatGroup{{&StatNames[GroupRequestDuration], &s.RequestDuration}}
	if s.RequestSize != nil {
		out = append(out, StatGroup{&StatNames[GroupRequestSize], s.RequestSize})
	}
	if s.ResponseSize != nil {
		out = append(out, StatGroup{&StatNames[GroupResponseSize], s.ResponseSize})
	}
	return out
}

// Group returns group g's Stat, creating an absent size group (for readers
// of an answer).
func (s *ServiceEvents) Group(g int) *Stat {
	switch g {
	case GroupRequestSize:
		if s.RequestSize == nil {
			s.RequestSize = &Stat{}
		}
		return s.RequestSize
	case GroupResponseSize:
		if s.ResponseSize == nil {
			s.ResponseSize = &Stat{}
		}
		return s.ResponseSize
	}
	return &s.RequestDuration
}

// SetPart sets part p (as StatElement numbers them) from an element's value:
// min and max are integers, average and std-dev doubles.
func (st *Stat) SetPart(p int, i int64, f float64) {
	switch p {
	case 0:
		st.Min = i
	case 1:
		st.Avg = f
	case 2:
		st.Max = i
	case 3:
		st.StdDev = f
	}
}
