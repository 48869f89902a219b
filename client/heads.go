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
