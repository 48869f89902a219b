// Package events fans the domain's changes out to the clients that watch
// them (GET /v1/events). Publish never blocks: each subscriber has a
// bounded buffer, and one whose buffer is full is dropped — its stream
// ends with the reason Lagged — rather than make the domain wait for a
// slow reader. A dropped reader subscribes again and starts over from the
// new stream's hello.
package events

import (
	"sync"
	"time"

	"vers/api"
)

// DefaultBuffer is how many events a subscriber may fall behind by.
const DefaultBuffer = 256

// Lagged is the reason of a subscription dropped for falling behind.
const Lagged = "the reader fell behind and events were dropped; subscribe again to re-read the state"

// Broker delivers every published event, in order, to every subscriber.
type Broker struct {
	buf  int
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// New returns a broker whose subscribers may fall behind by buf events.
func New(buf int) *Broker {
	if buf <= 0 {
		buf = DefaultBuffer
	}
	return &Broker{buf: buf, subs: map[*Subscription]struct{}{}}
}

// Subscription is one reader's stream of events.
type Subscription struct {
	b      *Broker
	c      chan api.Event
	reason string // why it ended; set before c is closed
}

// Subscribe starts a stream of the events published from now on.
func (b *Broker) Subscribe() *Subscription {
	s := &Subscription{b: b, c: make(chan api.Event, b.buf)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Publish hands e to every subscriber without waiting for any; a
// subscriber with no room left is dropped. An event without a time gets
// the current one.
func (b *Broker) Publish(e api.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			b.end(s, Lagged)
		}
	}
}

// Subscribers counts the open subscriptions.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// end closes s's stream with reason; b.mu is held.
func (b *Broker) end(s *Subscription, reason string) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	s.reason = reason
	close(s.c)
}

// Events is the stream; it is closed when the subscription ends (Close, or
// dropped: see Reason).
func (s *Subscription) Events() <-chan api.Event { return s.c }

// Reason says why the stream ended, once Events is closed: Lagged, or
// "closed" after Close.
func (s *Subscription) Reason() string {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.reason
}

// Close ends the subscription; it may be called more than once.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.end(s, "closed")
}
