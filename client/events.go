package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/coder/websocket"

	"vers/api"
)

var (
	// ErrLagged: the daemon dropped the stream because the reader fell
	// behind; subscribe again and start from the new hello.
	ErrLagged = errors.New("the event stream fell behind and was dropped")
	// ErrEventsEnded: the stream ended without being asked to (the daemon
	// stopped or went away).
	ErrEventsEnded = errors.New("versd ended the event stream")
)

// Events calls fn with every event of GET /v1/events, the hello first,
// until ctx ends (ctx's error), fn fails (its error), the daemon drops a
// slow reader (ErrLagged, after fn saw the "lagged" event) or the stream
// ends otherwise (ErrEventsEnded).
func (c *Client) Events(ctx context.Context, fn func(api.Event) error) error {
	conn, _, err := websocket.Dial(ctx, c.base+"/v1/events", &websocket.DialOptions{HTTPClient: c.http})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.transportErr(err)
	}
	defer conn.CloseNow()
	// A hello holds every VM.
	conn.SetReadLimit(64 << 20)
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %v", ErrEventsEnded, err)
		}
		var e api.Event
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("bad event from versd: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
		if e.Type == api.EventLagged {
			return fmt.Errorf("%w: %s", ErrLagged, e.Reason)
		}
	}
}
