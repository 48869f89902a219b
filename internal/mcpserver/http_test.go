package mcpserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"vers/api"
)

// withToken adds the Authorization header to every request.
type withToken struct {
	token string
	next  http.RoundTripper
}

func (w withToken) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+w.token)
	return w.next.RoundTrip(r)
}

func TestHTTPNeedsTheToken(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef0123456789abcdef"
	refused := 0
	srv := httptest.NewServer(HTTPHandler(New(newFake(api.VM{ID: "vm1", State: api.StateRunning}), Options{}), token, func(*http.Request) { refused++ }))
	defer srv.Close()

	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`
	for _, tt := range []struct {
		name, header string
		want         int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a wrong token", "Bearer " + strings.Repeat("f", len(token)), http.StatusUnauthorized},
		{"another scheme", "Basic " + token, http.StatusUnauthorized},
		{"the token", "Bearer " + token, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader(initialize))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if tt.header != "" {
			req.Header.Set("Authorization", tt.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %s, want %d", tt.name, resp.Status, tt.want)
		}
	}
	if refused != 3 {
		t.Errorf("%d refusals reported, want 3", refused)
	}

	// The SDK's own streamable client, with the token, lists and calls tools.
	ctx := context.Background()
	tr := &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", HTTPClient: &http.Client{Transport: withToken{token, http.DefaultTransport}}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	var st StatusResult
	result(t, "status", call(t, cs, "status", nil), &st)
	if len(st.VMs) != 1 || st.VMs[0].ID != "vm1" {
		t.Errorf("status over HTTP: %+v", st)
	}
	// Without it the client cannot even connect.
	bare := &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", MaxRetries: -1}
	if cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, bare, nil); err == nil {
		cs.Close()
		t.Error("a client without the token connected")
	}
}
