package client

import (
	"context"
	"net/http"

	"vers/api"
)

// ListHeads returns the project directories whose HEAD names a VM.
func (c *Client) ListHeads(ctx context.Context) ([]api.Head, error) {
	var out []api.Head
	return out, c.do(ctx, http.MethodGet, "/v1/heads", nil, &out)
}

// SetHead reports that dir's HEAD names vm ("" when it was cleared).
func (c *Client) SetHead(ctx context.Context, dir, vm string) (api.Head, error) {
	var out api.Head
	return out, c.do(ctx, http.MethodPut, "/v1/heads", api.SetHeadRequest{Dir: dir, VM: vm}, &out)
}

// Diff compares the filesystems of two running VMs.
func (c *Client) Diff(ctx context.Context, req api.FSDiffRequest) (api.FSDiff, error) {
	var out api.FSDiff
	return out, c.do(ctx, http.MethodPost, "/v1/diff", req, &out)
}

// CheckoutHead moves the HEAD of project directory dir, one ListHeads
// names, to vm, as `vers checkout` run in dir does.
func (c *Client) CheckoutHead(ctx context.Context, dir, vm string) (api.Head, error) {
	var out api.Head
	return out, c.do(ctx, http.MethodPost, "/v1/heads/checkout", api.SetHeadRequest{Dir: dir, VM: vm}, &out)
}

// Fanout runs one command in every VM req names, at once, in versd, and
// returns the table: a row per VM and the rows grouped by identical result.
func (c *Client) Fanout(ctx context.Context, req api.FanoutRequest) (api.FanoutResult, error) {
	var out api.FanoutResult
	return out, c.do(ctx, http.MethodPost, "/v1/fanout", req, &out)
}
