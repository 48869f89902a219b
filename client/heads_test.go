package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"vers/api"
	"vers/internal/errdefs"
)

// TestCheckoutFanoutConsole: each call sends its route what it takes and
// decodes what versd answers, errors included.
func TestCheckoutFanoutConsole(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.RequestURI() {
		case "POST /v1/heads/checkout":
			var req api.SetHeadRequest
			json.NewDecoder(r.Body).Decode(&req)
			json.NewEncoder(w).Encode(api.Head{Dir: req.Dir, VMID: "id-of-" + req.VM})
		case "POST /v1/fanout":
			var req api.FanoutRequest
			json.NewDecoder(r.Body).Decode(&req)
			json.NewEncoder(w).Encode(api.FanoutResult{Command: req.Command, ExitCode: len(req.On),
				Results: []api.FanoutRow{{VM: api.VMRef{Alias: req.On[0]}, ExitCode: 2}}})
		case "GET /v1/vms/web/console?bytes=5":
			w.Write([]byte("login"))
		case "GET /v1/vms/web/console":
			w.Write([]byte("whole log"))
		default:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(api.Error{Code: "not_found", Message: "no VM " + r.URL.Path})
		}
	})
	ctx := context.Background()
	if h, err := c.CheckoutHead(ctx, "/p", "web"); err != nil || h.Dir != "/p" || h.VMID != "id-of-web" {
		t.Errorf("checkout: %+v %v", h, err)
	}
	res, err := c.Fanout(ctx, api.FanoutRequest{Command: "true", On: []string{"a", "b"}})
	if err != nil || res.Command != "true" || res.ExitCode != 2 || len(res.Results) != 1 || res.Results[0].VM.Alias != "a" {
		t.Errorf("fanout: %+v %v", res, err)
	}
	if b, err := c.Console(ctx, "web", 5); err != nil || string(b) != "login" {
		t.Errorf("console 5 bytes: %q %v", b, err)
	}
	if b, err := c.Console(ctx, "web", 0); err != nil || string(b) != "whole log" {
		t.Errorf("console: %q %v", b, err)
	}
	if _, err := c.Console(ctx, "db", 0); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("console of an unknown VM: %v", err)
	}
	if _, err := c.Console(ctx, "", 0); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("console of no VM: %v", err)
	}
}
