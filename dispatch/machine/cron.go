package machine

import (
	"fmt"
	"time"
	_ "time/tzdata" // named time zones work on machines without a zoneinfo database

	"github.com/robfig/cron/v3"
)

// Misfire policies: what a cron task does with occurrences missed while the
// engine was down.
const (
	MisfireSkip    = "skip"     // run only the latest missed occurrence (default)
	MisfireCatchUp = "catch_up" // run every missed occurrence (at most MaxCatchUp)
)

const (
	// CronWindow is how many future runs a cron task keeps scheduled.
	CronWindow = 3
	// MaxCatchUp bounds the runs one catch-up creates.
	MaxCatchUp = 1000
)

// cronParser reads 6 fields with seconds, or 5 without (robfig/cron/v3:
// the well-kept Go cron parser), and descriptors such as @hourly.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// cronSchedule is a parsed cron policy.
type cronSchedule struct {
	sched cron.Schedule
	loc   *time.Location
}

func parseCron(expr, tz string) (cronSchedule, error) {
	s, err := cronParser.Parse(expr)
	if err != nil {
		return cronSchedule{}, Invalid("run_policy.cron.expr", "%v (want 6 fields with seconds, e.g. \"*/5 * * * * *\", or 5 without)", err)
	}
	loc := time.UTC
	if tz != "" {
		if loc, err = time.LoadLocation(tz); err != nil {
			return cronSchedule{}, Invalid("run_policy.cron.time_zone", "unknown time zone %q", tz)
		}
	}
	return cronSchedule{sched: s, loc: loc}, nil
}

// next returns the first occurrence strictly after ms (unix ms), or 0.
func (c cronSchedule) next(ms int64) int64 {
	t := c.sched.Next(time.UnixMilli(ms).In(c.loc))
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// cronOf parses the cron policy of a normalized spec; Normalize already
// checked it, so an error here is a broken invariant.
func cronOf(spec *TaskSpec) cronSchedule {
	c, err := parseCron(spec.Policy.CronExpr, spec.Policy.TimeZone)
	if err != nil {
		panic(fmt.Sprintf("dispatch: cron of a normalized spec: %v", err))
	}
	return c
}
