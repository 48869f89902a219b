package vm

import (
	"context"
	"errors"
	"testing"
	"time"

	"vers/internal/agent"
)

// fakeClock is a guest whose clock is the host's plus off, reached over a
// link that takes delay each way.
type fakeClock struct {
	off, delay time.Duration
	syncs      int
	failInfo   bool
}

func (f *fakeClock) Info(ctx context.Context) (agent.Info, error) {
	if f.failInfo {
		return agent.Info{}, errors.New("agent gone")
	}
	time.Sleep(f.delay)
	now := time.Now().Add(f.off)
	time.Sleep(f.delay)
	return agent.Info{Time: now}, nil
}

func (f *fakeClock) Sync(ctx context.Context, s agent.SyncRequest) error {
	f.syncs++
	f.off += s.Adjust
	return nil
}

func TestTrimClock(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		off       time.Duration
		wantSyncs int
	}{
		{"behind", -250 * time.Millisecond, 1},
		{"ahead", 3 * time.Second, 1},
		{"within tolerance", 4 * time.Millisecond, 0},
	} {
		f := &fakeClock{off: tc.off, delay: time.Millisecond}
		r, err := trimClock(ctx, f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if f.syncs != tc.wantSyncs || f.off.Abs() > clockTolerance {
			t.Errorf("%s: %d corrections, guest now %v off; want %d and within %v", tc.name, f.syncs, f.off, tc.wantSyncs, clockTolerance)
		}
		if r.RTTMillis < 2 || r.OffsetMillis > float64(clockTolerance.Milliseconds()) || r.OffsetMillis < -float64(clockTolerance.Milliseconds()) {
			t.Errorf("%s: last reading %+v", tc.name, r)
		}
	}

	// A guest whose clock will not move: at most clockRounds corrections.
	stuck := &stuckClock{fakeClock{off: time.Second}}
	if _, err := trimClock(ctx, stuck); err != nil || stuck.syncs != clockRounds {
		t.Errorf("a clock that does not move: %d corrections, %v; want %d", stuck.syncs, err, clockRounds)
	}
	if _, err := trimClock(ctx, &fakeClock{failInfo: true}); err == nil {
		t.Error("an agent that does not answer: no error")
	}
}

type stuckClock struct{ fakeClock }

func (s *stuckClock) Sync(ctx context.Context, r agent.SyncRequest) error {
	s.syncs++
	return nil
}
