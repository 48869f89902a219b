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
