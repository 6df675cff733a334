package daemon

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule tells when the retention purge runs next. clean-interval accepts
// upstream's Quartz cron form ("0 0 0/12 1/1 * ? *") and Go durations ("12h").
type Schedule interface {
	// Next returns the first run time strictly after t.
	Next(t time.Time) time.Time
	String() string
}

// ParseSchedule parses a Go duration (positive) or a Quartz cron expression.
func ParseSchedule(s string) (Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("must not be empty")
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return nil, errors.New("a duration must be positive")
		}
		return every(d), nil
	}
	if len(strings.Fields(s)) < 6 {
		return nil, errors.New("is neither a Go duration (e.g. 12h) nor a Quartz cron expression (sec min hour day-of-month month day-of-week [year])")
	}
	return parseQuartz(s)
}

type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }
func (e every) String() string             { return time.Duration(e).String() }

// quartz is a parsed Quartz cron expression evaluated in local time, as
// upstream's scheduler does. Supported: numbers, names (JAN-DEC, SUN-SAT),
// '*', '?', ranges, lists and steps; not L, W and # (rejected at start).
type quartz struct {
	expr                     string
	sec, min, hour, dom, mon uint64 // bit sets
	dow                      uint64 // bit 1 = Sunday … 7 = Saturday (Quartz numbering)
	domAny, dowAny           bool
	years                    map[int]bool // nil: every year
}

var monthNames = map[string]int{"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}
var dayNames = map[string]int{"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}

func parseQuartz(expr string) (*quartz, error) {
	f := strings.Fields(strings.ToUpper(expr))
	if len(f) > 7 {
		return nil, errors.New("a Quartz cron expression has 6 or 7 fields")
	}
	q := &quartz{expr: expr}
	var err error
	parse := func(name, s string, lo, hi int, names map[string]int) (uint64, bool) {
		if err != nil {
			return 0, false
		}
		var set uint64
		var any bool
		set, any, err = parseCronField(s, lo, hi, names)
		if err != nil {
			err = fmt.Errorf("%s field %q: %w", name, s, err)
		}
		return set, any
	}
	q.sec, _ = parse("seconds", f[0], 0, 59, nil)
	q.min, _ = parse("minutes", f[1], 0, 59, nil)
	q.hour, _ = parse("hours", f[2], 0, 23, nil)
	q.dom, q.domAny = parse("day-of-month", f[3], 1, 31, nil)
	q.mon, _ = parse("month", f[4], 1, 12, monthNames)
	q.dow, q.dowAny = parse("day-of-week", f[5], 1, 7, dayNames)
	if err != nil {
		return nil, err
	}
	if f[3] == "?" && f[5] == "?" {
		return nil, errors.New("'?' may stand in only one of day-of-month and day-of-week")
	}
	if !q.domAny && !q.dowAny {
		return nil, errors.New("specifying both a day-of-month and a day-of-week is not supported; use '?' in one of them")
	}
	if len(f) == 7 && f[6] != "*" {
		set, err := parseYears(f[6])
		if err != nil {
			return nil, fmt.Errorf("year field %q: %w", f[6], err)
		}
		q.years = set
	}
	return q, nil
}

// parseCronField returns the bit set of allowed values and whether the field
// is unrestricted ('*' or '?').
func parseCronField(s string, lo, hi int, names map[string]int) (uint64, bool, error) {
	if s == "?" || s == "*" {
		var set uint64
		for v := lo; v <= hi; v++ {
			set |= 1 << v
		}
		return set, true, nil
	}
	var set uint64
	for _, part := range strings.Split(s, ",") {
		step := 1
		if i := strings.IndexByte(part, '/'); i >= 0 {
			n, err := strconv.Atoi(part[i+1:])
			if err != nil || n < 1 {
				return 0, false, fmt.Errorf("bad step %q", part[i+1:])
			}
			step = n
			part = part[:i]
		}
		var from, to int
		switch {
		case part == "*" || part == "?":
			from, to = lo, hi
		case strings.Contains(part, "-"):
			a, b, _ := strings.Cut(part, "-")
			var err error
			if from, err = cronValue(a, lo, hi, names); err != nil {
				return 0, false, err
			}
			if to, err = cronValue(b, lo, hi, names); err != nil {
				return 0, false, err
			}
			if to < from {
				return 0, false, fmt.Errorf("range %q runs backwards", part)
			}
		default:
			v, err := cronValue(part, lo, hi, names)
			if err != nil {
				return 0, false, err
			}
			from, to = v, v
			if step > 1 || strings.Contains(s, "/") {
				to = hi // Quartz: "a/b" means from a to the end in steps of b
			}
		}
		for v := from; v <= to; v += step {
			set |= 1 << v
		}
	}
	return set, false, nil
}

func cronValue(s string, lo, hi int, names map[string]int) (int, error) {
	if v, ok := names[s]; ok {
		return v, nil
	}
	if strings.ContainsAny(s, "LW#") {
		return 0, fmt.Errorf("%q: L, W and # are not supported", s)
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("%d is outside %d-%d", v, lo, hi)
	}
	return v, nil
}

func parseYears(s string) (map[int]bool, error) {
	set := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		step := 1
		if i := strings.IndexByte(part, '/'); i >= 0 {
			n, err := strconv.Atoi(part[i+1:])
			if err != nil || n < 1 {
				return nil, fmt.Errorf("bad step %q", part[i+1:])
			}
			step, part = n, part[:i]
		}
		from, to := 1970, 2199
		if part != "*" {
			a, b, isRange := strings.Cut(part, "-")
			var err error
			if from, err = cronValue(a, 1970, 2199, nil); err != nil {
				return nil, err
			}
			to = from
			if isRange {
				if to, err = cronValue(b, 1970, 2199, nil); err != nil {
					return nil, err
				}
			} else if step > 1 {
				to = 2199
			}
		}
		for y := from; y <= to; y += step {
			set[y] = true
		}
	}
	return set, nil
}

func (q *quartz) String() string { return q.expr }

func (q *quartz) dayMatches(t time.Time) bool {
	if q.mon&(1<<int(t.Month())) == 0 {
		return false
	}
	if q.years != nil && !q.years[t.Year()] {
		return false
	}
	domOK := q.dom&(1<<t.Day()) != 0
	dowOK := q.dow&(1<<(int(t.Weekday())+1)) != 0
	return domOK && dowOK
}

// Next walks forward day by day, then through the day's hours, minutes and
// seconds; bounded to about five years so an impossible expression (31 FEB)
// ends instead of looping.
func (q *quartz) Next(t time.Time) time.Time {
	t = t.Truncate(time.Second).Add(time.Second)
	loc := t.Location()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	for i := 0; i < 5*366; i++ {
		if q.dayMatches(day) {
			for h := 0; h < 24; h++ {
				if q.hour&(1<<h) == 0 {
					continue
				}
				for m := 0; m < 60; m++ {
					if q.min&(1<<m) == 0 {
						continue
					}
					for s := 0; s < 60; s++ {
						if q.sec&(1<<s) == 0 {
							continue
						}
						c := time.Date(day.Year(), day.Month(), day.Day(), h, m, s, 0, loc)
						if !c.Before(t) && c.Day() == day.Day() {
							return c
						}
					}
				}
			}
		}
		day = time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, loc)
	}
	return time.Time{}
}
