package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"vers/api"
)

// ReadTree streams the directory path out of VM ref as a tar archive. The
// reader fails, never ends, when the transfer is cut: a tar archive cut
// between two entries would read as a whole one.
func (c *Client) ReadTree(ctx context.Context, ref, path string) (io.ReadCloser, error) {
	if ref == "" {
		return nil, ErrNoRef
	}
	resp, err := c.open(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(ref)+"/tree?path="+url.QueryEscape(path))
	if err != nil {
		return nil, err
	}
	return &cutReader{ReadCloser: resp.Body}, nil
}

// cutReader says what a cut body means.
type cutReader struct{ io.ReadCloser }

func (r *cutReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("the transfer was cut short (versd's log says why): %w", err)
	}
	return n, err
}

// WriteTree extracts the tar archive r into VM ref: into path/name when
// path is a directory there, as path otherwise.
func (c *Client) WriteTree(ctx context.Context, ref, path, name string, r io.Reader) (api.TreeResult, error) {
	var res api.TreeResult
	if ref == "" {
		return res, ErrNoRef
	}
	u := c.base + "/v1/vms/" + url.PathEscape(ref) + "/tree?path=" + url.QueryEscape(path) + "&name=" + url.QueryEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, r)
	if err != nil {
		return res, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	return res, c.send(req, &res)
}
