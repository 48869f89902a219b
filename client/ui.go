package client

import (
	"context"
	"net/http"

	"vers/api"
)

// UILogin asks versd for a one-time login URL of its web UI, opening the
// UI's loopback listener if it has none.
func (c *Client) UILogin(ctx context.Context) (api.UILogin, error) {
	var out api.UILogin
	return out, c.do(ctx, http.MethodPost, "/v1/ui/login", nil, &out)
}
