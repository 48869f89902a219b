package events

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"vers/api"
)

func ev(i int) api.Event { return api.Event{Type: api.EventVMState, VMID: fmt.Sprint(i)} }

func TestOrderEverySubscriber(t *testing.T) {
	b := New(100)
	a, c := b.Subscribe(), b.Subscribe()
	defer a.Close()
	defer c.Close()
	for i := range 50 {
		b.Publish(ev(i))
	}
	for _, s := range []*Subscription{a, c} {
		for i := range 50 {
			e := <-s.Events()
			if e.VMID != fmt.Sprint(i) || e.Time.IsZero() {
				t.Fatalf("event %d: %+v", i, e)
			}
		}
	}
}

func TestSubscribeSeesOnlyLaterEvents(t *testing.T) {
	b := New(4)
	b.Publish(ev(0))
	s := b.Subscribe()
	defer s.Close()
	b.Publish(ev(1))
	if e := <-s.Events(); e.VMID != "1" {
		t.Fatalf("got %+v, want event 1", e)
	}
}

// A subscriber that never reads is dropped with Lagged; Publish does not
// wait for it, and the others get everything.
func TestSlowSubscriberDroppedNotBlocking(t *testing.T) {
	b := New(3)
	slow, fast := b.Subscribe(), b.Subscribe()
	defer fast.Close()
	got := make(chan api.Event, 100)
	go func() {
		for e := range fast.Events() {
			got <- e
		}
		close(got)
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			b.Publish(ev(i))
			// fast keeps up: wait for it, so only slow falls behind.
			if e := <-got; e.VMID != fmt.Sprint(i) {
				t.Errorf("fast got %+v, want %d", e, i)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	n := 0
	for range slow.Events() {
		n++
	}
	if n != 3 || slow.Reason() != Lagged {
		t.Fatalf("slow got %d events and reason %q; want its 3 buffered and %q", n, slow.Reason(), Lagged)
	}
	if b.Subscribers() != 1 {
		t.Fatalf("%d subscribers, want 1", b.Subscribers())
	}
}

func TestCloseUnsubscribes(t *testing.T) {
	b := New(2)
	s := b.Subscribe()
	s.Close()
	s.Close()
	if _, ok := <-s.Events(); ok {
		t.Fatal("stream open after Close")
	}
	if s.Reason() != "closed" || b.Subscribers() != 0 {
		t.Fatalf("reason %q, %d subscribers", s.Reason(), b.Subscribers())
	}
	for i := range 5 {
		b.Publish(ev(i)) // no panic on a closed stream, no block
	}
}

// Many readers that come and go while events flow leave no goroutine and
// no subscription behind.
func TestNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	b := New(8)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				b.Publish(ev(i))
			}
		}
	}()
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := b.Subscribe()
			for range 5 {
				<-s.Events()
			}
			s.Close()
		}()
	}
	wg.Wait()
	close(stop)
	waitGoroutines(t, before)
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("%d subscriptions left", n)
	}
}

// waitGoroutines waits until no more than n goroutines run, or fails.
func waitGoroutines(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}
