package vm

import (
	"context"
	"time"

	"vers/api"
	"vers/internal/agent"
)

// A guest's clock stands still while its vCPUs are stopped (a branch's or
// a commit's pause, `vers pause`) and a guest made from a saved state starts
// on the clock of that state. The sync that hands a guest over sets its
// clock to the host's, but that reading reaches the guest late by however
// long the request took to arrive (in a fresh child under TCG, whose code is
// translated afresh, up to a few hundred milliseconds). So after the sync,
// and after every pause, vers reads the guest's clock against the host's
// and moves it by the difference: a relative correction, which no transit
// delay spoils, good to half the round trip of the reading.

const (
	// clockTolerance is the offset left alone.
	clockTolerance = 10 * time.Millisecond
	// clockRounds bounds the corrections of one trim: a reading taken over
	// a slow round trip is coarse, and the next one, over code now warm,
	// finer.
	clockRounds = 3
	// clockTrimTimeout bounds a trim done in the background.
	clockTrimTimeout = 10 * time.Second
)

// guestClock is the part of an agent session the clock needs.
type guestClock interface {
	Info(ctx context.Context) (agent.Info, error)
	Sync(ctx context.Context, s agent.SyncRequest) error
}

// readClock reads the guest clock through c against the host's at the
// middle of the round trip.
func readClock(ctx context.Context, c guestClock) (api.ClockOffset, time.Duration, error) {
	t0 := time.Now()
	gi, err := c.Info(ctx)
	rtt := time.Since(t0)
	if err != nil {
		return api.ClockOffset{}, 0, err
	}
	off := gi.Time.Sub(t0.Add(rtt / 2))
	return api.ClockOffset{
		OffsetMillis: float64(off.Microseconds()) / 1000,
		RTTMillis:    float64(rtt.Microseconds()) / 1000,
	}, off, nil
}

// trimClock brings the guest clock of c within clockTolerance of the
// host's, or as close as clockRounds corrections get it, and returns the
// last reading.
func trimClock(ctx context.Context, c guestClock) (api.ClockOffset, error) {
	for round := 0; ; round++ {
		reading, off, err := readClock(ctx, c)
		if err != nil || off.Abs() <= clockTolerance || round == clockRounds {
			return reading, err
		}
		if err := c.Sync(ctx, agent.SyncRequest{Adjust: -off}); err != nil {
			return reading, err
		}
	}
}

// trimClockLater trims the clock of VM id's guest in the background, after
// its vCPUs were stopped for a while: its agent session, if it has one, is
// used, none is made.
func (m *Manager) trimClockLater(id string) {
	if mc := m.machine(id); mc != nil {
		if c := mc.currentAgent(); c != nil {
			m.trimClockWith(id, c)
		}
	}
}

// trimClockWith trims a guest's clock through c in the background, with a
// deadline: off the path of whatever waits for the VM, and done long
// before a first command could be sent to it.
func (m *Manager) trimClockWith(id string, c *agent.Client) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), clockTrimTimeout)
		defer cancel()
		if r, err := trimClock(ctx, c); err != nil {
			m.log.Debug("trim guest clock", "vm", id, "err", err)
		} else {
			m.log.Debug("trimmed guest clock", "vm", id, "offset_ms", r.OffsetMillis, "rtt_ms", r.RTTMillis)
		}
	}()
}
