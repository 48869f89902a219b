package api

import "time"

// UILogin answers POST /v1/ui/login: a URL on versd's loopback listener
// that logs a browser in to the web UI, once, before ExpiresAt.
type UILogin struct {
	URL string `json:"url"`
	// Addr is the listener, 127.0.0.1:PORT.
	Addr      string    `json:"addr"`
	ExpiresAt time.Time `json:"expires_at"`
}
