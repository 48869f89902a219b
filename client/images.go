package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"vers/api"
	"vers/internal/errdefs"
)

func (c *Client) ListImages(ctx context.Context) ([]api.Image, error) {
	var out []api.Image
	return out, c.do(ctx, http.MethodGet, "/v1/images", nil, &out)
}

// BuildImage has versd build the image name (again, with force) and waits
// for it, writing each line of the build's progress to progress (which may
// be nil). Several clients that build the same image share one build.
// Cancelling ctx ends this wait; versd cancels the build when no client
// waits for it any more.
func (c *Client) BuildImage(ctx context.Context, name string, force bool, progress io.Writer) (api.Image, error) {
	if name == "" {
		return api.Image{}, fmt.Errorf("no image named: give one of those `vers image ls` lists: %w", errdefs.ErrInvalid)
	}
	if progress == nil {
		progress = io.Discard
	}
	resp, err := c.open(ctx, http.MethodPost, "/v1/images/"+url.PathEscape(name)+"/build?force="+strconv.FormatBool(force))
	if err != nil {
		return api.Image{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev api.BuildEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return api.Image{}, ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return api.Image{}, fmt.Errorf("connection to versd lost during the build of %s: %w", name, err)
		}
		switch {
		case ev.Error != nil:
			return api.Image{}, &Error{Status: resp.StatusCode, Code: ev.Error.Code, Message: ev.Error.Message}
		case ev.Image != nil:
			return *ev.Image, nil
		case ev.Progress != "":
			if _, err := fmt.Fprintln(progress, ev.Progress); err != nil {
				return api.Image{}, err
			}
		}
	}
}
