package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/events"
)

// EventSource is what GET /v1/events needs: the broker the domain
// publishes to, and the VMs as they are now for the hello.
type EventSource interface {
	Subscribe() *events.Subscription
	List(ctx context.Context) ([]api.VM, error)
}

// VMEvents is the daemon's EventSource: the broker and the manager.
type VMEvents struct {
	*events.Broker
	VMs interface {
		List(ctx context.Context) ([]api.VM, error)
	}
}

func (v VMEvents) List(ctx context.Context) ([]api.VM, error) { return v.VMs.List(ctx) }

// eventWriteWait bounds one write to a watcher: one that does not read is
// dropped by the broker meanwhile, and its stream then ends.
const eventWriteWait = 30 * time.Second

// events streams every change over a WebSocket: a hello with every VM,
// then the events, each a JSON text message. The subscription comes
// before the list, so no change falls between the two (one may be seen
// twice). A reader that falls behind gets a "lagged" event and the stream
// closes; a client that goes away ends its subscription at once.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if s.eventSrc == nil {
		s.writeError(w, r, fmt.Errorf("this daemon publishes no events: %w", errdefs.ErrUnavailable))
		return
	}
	sub := s.eventSrc.Subscribe()
	defer sub.Close()
	vms, err := s.eventSrc.List(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// No options: a browser's request from a page of another origin than
	// the host it asks is refused (cross-site WebSocket hijacking of a UI
	// session); the Go clients send no Origin.
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	// The client sends nothing: reading only notices that it went away,
	// which ends ctx.
	ctx := conn.CloseRead(r.Context())
	if vms == nil {
		vms = []api.VM{}
	}
	if err := writeEvent(ctx, conn, api.Event{Type: api.EventHello, Time: time.Now().UTC(), VMs: vms}); err != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.Events():
			if !ok {
				writeEvent(ctx, conn, api.Event{Type: api.EventLagged, Time: time.Now().UTC(), Reason: sub.Reason()})
				conn.Close(websocket.StatusTryAgainLater, "lagged")
				return
			}
			if err := writeEvent(ctx, conn, e); err != nil {
				return
			}
		}
	}
}

func writeEvent(ctx context.Context, conn *websocket.Conn, e api.Event) error {
	ctx, cancel := context.WithTimeout(ctx, eventWriteWait)
	defer cancel()
	b, _ := json.Marshal(e)
	return conn.Write(ctx, websocket.MessageText, b)
}
