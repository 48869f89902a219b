// Package client is the Go client of the vers API. The CLI and the
// end-to-end tests use it; it speaks only the wire types of package api.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"vers/api"
	"vers/internal/errdefs"
)

// Client talks to one versd.
type Client struct {
	http *http.Client
	base string // http://versd for the socket, or the URL of a versd over TCP
	// where names the daemon in messages: its socket, or its URL.
	where string
}

// New returns a client for the daemon listening on the unix socket path.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{http: &http.Client{Transport: tr}, base: "http://versd", where: "socket " + socket}
}

// NewURL returns a client for a versd that serves the API over TCP
// (versd --listen) at rawURL, such as http://127.0.0.1:7777; every
// request, WebSocket ones too, carries token as a bearer token ("" sends
// none, and versd answers 401).
func NewURL(rawURL, token string) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q is no URL of versd: write it http://HOST:PORT, such as http://127.0.0.1:7777: %w", rawURL, errdefs.ErrInvalid)
	}
	base := strings.TrimSuffix(u.String(), "/")
	var tr http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
	if token != "" {
		tr = bearerTransport{token: token, next: tr}
	}
	return &Client{http: &http.Client{Transport: tr}, base: base, where: base}, nil
}

// bearerTransport adds the Authorization header to every request.
type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (b bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(req)
}

// Error is an API error answer.
type Error struct {
	Status  int
	Code    string
	Message string
	// Deleted lists the VMs a kill removed before it failed.
	Deleted []string
}

func (e *Error) Error() string { return e.Message }

// Is lets errors.Is(err, errdefs.ErrNotFound) and the like work on API errors.
func (e *Error) Is(target error) bool {
	kind := errdefs.FromCode(e.Code)
	return kind != nil && kind == target
}

// ErrDaemonDown means nothing answers on the socket, or at the URL.
var ErrDaemonDown = errors.New("versd is not running")

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

// open sends a bodiless request and returns versd's successful response,
// whose body the caller reads and closes, or versd's error.
func (c *Client) open(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportErr(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// send sends req and decodes its JSON answer into out (which may be nil),
// or its error.
func (c *Client) send(req *http.Request, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *Client) transportErr(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if c.base != "http://versd" {
			return fmt.Errorf("%w at %s: nothing answers there; start versd with --listen on that host, or unset VERS_URL to use this host's versd: %w",
				ErrDaemonDown, c.where, errdefs.ErrUnavailable)
		}
		return fmt.Errorf("%w (%s)", ErrDaemonDown, c.where)
	}
	return err
}

func decodeError(resp *http.Response) error {
	if resp.StatusCode == http.StatusUnauthorized {
		return unauthorized(resp)
	}
	var e api.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &e) != nil || e.Code == "" {
		// Not an API error: the route itself is unknown (a daemon of an older
		// build) or something else answered.
		code := api.CodeInternal
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			code = api.CodeUnavailable
		}
		return &Error{Status: resp.StatusCode, Code: code, Message: fmt.Sprintf("versd answered %s: %s (is it an older build? restart it)", resp.Status, bytes.TrimSpace(b))}
	}
	return &Error{Status: resp.StatusCode, Code: e.Code, Message: e.Message, Deleted: e.Deleted}
}

// unauthorized is versd's 401 over TCP: no token, or a wrong one.
func unauthorized(resp *http.Response) error {
	where := "versd"
	if resp.Request != nil && resp.Request.URL != nil {
		where = "versd at " + resp.Request.URL.Host
	}
	return &Error{Status: resp.StatusCode, Code: api.CodeUnauthorized, Message: where +
		" refused the request: no token, or a wrong one; set VERS_TOKEN to the contents of versd.token in the VERS_HOME of that versd"}
}

// ErrNoRef is returned for an empty VM reference, which no route can take.
var ErrNoRef = fmt.Errorf("no VM named: give its alias, id or a unique id prefix: %w", errdefs.ErrInvalid)

// vmPath is the API path of VM ref, and suffix under it.
func vmPath(ref, suffix string) (string, error) {
	if ref == "" {
		return "", ErrNoRef
	}
	return "/v1/vms/" + url.PathEscape(ref) + suffix, nil
}

// Console returns the end of VM ref's console log, at most n bytes (0 for
// versd's default of 64 KiB).
func (c *Client) Console(ctx context.Context, ref string, n int64) ([]byte, error) {
	path, err := vmPath(ref, "/console")
	if err != nil {
		return nil, err
	}
	if n > 0 {
		path += "?bytes=" + strconv.FormatInt(n, 10)
	}
	resp, err := c.open(ctx, http.MethodGet, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, c.transportErr(err)
	}
	return b, nil
}

func (c *Client) Health(ctx context.Context) (api.Health, error) {
	var h api.Health
	return h, c.do(ctx, http.MethodGet, "/v1/health", nil, &h)
}

func (c *Client) ListVMs(ctx context.Context) ([]api.VM, error) {
	var vms []api.VM
	return vms, c.do(ctx, http.MethodGet, "/v1/vms", nil, &vms)
}

func (c *Client) GetVM(ctx context.Context, ref string) (api.VM, error) {
	var v api.VM
	path, err := vmPath(ref, "")
	if err != nil {
		return v, err
	}
	return v, c.do(ctx, http.MethodGet, path, nil, &v)
}

// VMInfo is VM ref and what it uses on the host now.
func (c *Client) VMInfo(ctx context.Context, ref string) (api.VMInfo, error) {
	var v api.VMInfo
	path, err := vmPath(ref, "/info")
	if err != nil {
		return v, err
	}
	return v, c.do(ctx, http.MethodGet, path, nil, &v)
}

func (c *Client) CreateVM(ctx context.Context, req api.CreateVMRequest) (api.VM, error) {
	var v api.VM
	req.DryRun = false
	return v, c.do(ctx, http.MethodPost, "/v1/vms", req, &v)
}

// ValidateVM asks versd whether CreateVM(req) would be accepted, without
// building or booting anything.
func (c *Client) ValidateVM(ctx context.Context, req api.CreateVMRequest) error {
	req.DryRun = true
	return c.do(ctx, http.MethodPost, "/v1/vms", req, nil)
}

func (c *Client) DeleteVM(ctx context.Context, ref string, recursive bool) (api.DeleteVMResponse, error) {
	var out api.DeleteVMResponse
	path, err := vmPath(ref, "?recursive="+strconv.FormatBool(recursive))
	if err != nil {
		return out, err
	}
	err = c.do(ctx, http.MethodDelete, path, nil, &out)
	var e *Error
	if errors.As(err, &e) {
		// A kill that failed part way still removed these.
		out.Deleted = e.Deleted
	}
	return out, err
}

// Branch branches the running VM ref.
func (c *Client) Branch(ctx context.Context, ref string, req api.BranchRequest) (api.BranchResponse, error) {
	var out api.BranchResponse
	path, err := vmPath(ref, "/branch")
	if err != nil {
		return out, err
	}
	return out, c.do(ctx, http.MethodPost, path, req, &out)
}

// Pause stops VM ref's vCPUs until Resume; pausing a paused VM is no error.
func (c *Client) Pause(ctx context.Context, ref string) (api.VM, error) {
	return c.vmAction(ctx, ref, "/pause")
}

// Resume runs VM ref again; resuming a running VM is no error.
func (c *Client) Resume(ctx context.Context, ref string) (api.VM, error) {
	return c.vmAction(ctx, ref, "/resume")
}

// vmAction posts an action without a body to VM ref and returns the VM.
func (c *Client) vmAction(ctx context.Context, ref, action string) (api.VM, error) {
	var v api.VM
	path, err := vmPath(ref, action)
	if err != nil {
		return v, err
	}
	return v, c.do(ctx, http.MethodPost, path, nil, &v)
}

// ReadFile streams the file path out of VM ref.
func (c *Client) ReadFile(ctx context.Context, ref, path string) (io.ReadCloser, os.FileMode, error) {
	if ref == "" {
		return nil, 0, ErrNoRef
	}
	resp, err := c.open(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(ref)+"/files?path="+url.QueryEscape(path))
	if err != nil {
		return nil, 0, err
	}
	mode, _ := strconv.ParseUint(resp.Header.Get("X-File-Mode"), 8, 32)
	return resp.Body, os.FileMode(mode), nil
}

// WriteFile stores r as the file path in VM ref.
func (c *Client) WriteFile(ctx context.Context, ref, path string, mode os.FileMode, r io.Reader) error {
	if ref == "" {
		return ErrNoRef
	}
	u := c.base + "/v1/vms/" + url.PathEscape(ref) + "/files?path=" + url.QueryEscape(path) + "&mode=" + strconv.FormatUint(uint64(mode.Perm()), 8)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, r)
	if err != nil {
		return err
	}
	return c.send(req, nil)
}
