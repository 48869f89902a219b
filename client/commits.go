package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"vers/api"
	"vers/internal/errdefs"
)

// ErrNoCommitRef is returned for an empty commit reference.
var ErrNoCommitRef = fmt.Errorf("no commit named: give a tag, a commit id or a unique id prefix: %w", errdefs.ErrInvalid)

// commitPath is the API path of commit ref, and suffix under it.
func commitPath(ref, suffix string) (string, error) {
	if ref == "" {
		return "", ErrNoCommitRef
	}
	return "/v1/commits/" + url.PathEscape(ref) + suffix, nil
}

// tagPath is the API path of tag name.
func tagPath(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("no tag named: %w", errdefs.ErrInvalid)
	}
	return "/v1/tags/" + url.PathEscape(name), nil
}

// Commit stores VM ref's whole state as a commit; it returns once the
// commit is durable.
func (c *Client) Commit(ctx context.Context, ref string, req api.CommitRequest) (api.CommitResponse, error) {
	var out api.CommitResponse
	path, err := vmPath(ref, "/commit")
	if err != nil {
		return out, err
	}
	return out, c.do(ctx, http.MethodPost, path, req, &out)
}

// ListCommits lists every commit, newest first.
func (c *Client) ListCommits(ctx context.Context) ([]api.Commit, error) {
	var out []api.Commit
	return out, c.do(ctx, http.MethodGet, "/v1/commits", nil, &out)
}

// GetCommit resolves ref (a tag, an id or a unique id prefix).
func (c *Client) GetCommit(ctx context.Context, ref string) (api.Commit, error) {
	var out api.Commit
	path, err := commitPath(ref, "")
	if err != nil {
		return out, err
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// CommitHistory is commit ref and the chain it descends from, newest first.
func (c *Client) CommitHistory(ctx context.Context, ref string) ([]api.Commit, error) {
	var out []api.Commit
	path, err := commitPath(ref, "/history")
	if err != nil {
		return out, err
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// RemoveCommits removes every commit of refs, or none of them, and returns
// the ids removed.
func (c *Client) RemoveCommits(ctx context.Context, refs []string) ([]string, error) {
	for _, ref := range refs {
		if ref == "" {
			return nil, ErrNoCommitRef
		}
	}
	var out api.RemoveCommitsResponse
	err := c.do(ctx, http.MethodPost, "/v1/commits/remove", api.RemoveCommitsRequest{Commits: refs}, &out)
	return out.Removed, err
}

// GCCommits removes the commits req selects and the chunks nothing needs.
func (c *Client) GCCommits(ctx context.Context, req api.GCRequest) (api.GCResponse, error) {
	var out api.GCResponse
	return out, c.do(ctx, http.MethodPost, "/v1/commits/gc", req, &out)
}

// CommitUsage is what commits take on disk.
func (c *Client) CommitUsage(ctx context.Context) (api.Usage, error) {
	var out api.Usage
	return out, c.do(ctx, http.MethodGet, "/v1/commits/usage", nil, &out)
}

// ExportCommit writes commit ref to w as one tar archive. An archive that
// versd could not finish arrives truncated, and is an error here: a nil
// error means w got all of it.
func (c *Client) ExportCommit(ctx context.Context, ref string, w io.Writer) error {
	path, err := commitPath(ref, "/export")
	if err != nil {
		return err
	}
	resp, err := c.open(ctx, http.MethodGet, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, &bodyReader{resp.Body}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("export of %s: %w", ref, err)
	}
	return nil
}

// bodyReader tells a response cut short (versd failed part way) from a
// write to w that failed.
type bodyReader struct{ r io.Reader }

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("the archive arrived incomplete: versd ended it early (%v); see versd.log", err)
	}
	return n, err
}

// ImportCommit sends an archive made by ExportCommit; versd makes its
// commit restorable on this host. When versd refuses it early, the answer
// comes at once and the rest of r is not read.
func (c *Client) ImportCommit(ctx context.Context, r io.Reader) (api.ImportResponse, error) {
	var out api.ImportResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/commits/import", r)
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	return out, c.send(req, &out)
}

// RunCommit starts VMs from commit ref.
func (c *Client) RunCommit(ctx context.Context, ref string, req api.RunCommitRequest) (api.RunCommitResponse, error) {
	var out api.RunCommitResponse
	path, err := commitPath(ref, "/run")
	if err != nil {
		return out, err
	}
	return out, c.do(ctx, http.MethodPost, path, req, &out)
}

// ListTags lists every tag.
func (c *Client) ListTags(ctx context.Context) ([]api.Tag, error) {
	var out []api.Tag
	return out, c.do(ctx, http.MethodGet, "/v1/tags", nil, &out)
}

// SetTag names a commit; an existing tag is a conflict unless req.Move.
func (c *Client) SetTag(ctx context.Context, name string, req api.TagRequest) (api.Tag, error) {
	var out api.Tag
	path, err := tagPath(name)
	if err != nil {
		return out, err
	}
	return out, c.do(ctx, http.MethodPut, path, req, &out)
}

// RemoveTag removes a tag; its commit stays.
func (c *Client) RemoveTag(ctx context.Context, name string) error {
	path, err := tagPath(name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, path, nil, nil)
}

// Sleep stores VM ref's state in a commit and stops its QEMU.
func (c *Client) Sleep(ctx context.Context, ref string) (api.VM, error) {
	return c.vmVerb(ctx, ref, "/sleep", nil)
}

// Wake brings a sleeping VM back, same id and alias.
func (c *Client) Wake(ctx context.Context, ref string) (api.VM, error) {
	return c.vmVerb(ctx, ref, "/wake", nil)
}

// Restore puts VM ref back to a commit's state in place.
func (c *Client) Restore(ctx context.Context, ref string, req api.RestoreRequest) (api.VM, error) {
	return c.vmVerb(ctx, ref, "/restore", req)
}

// vmVerb posts in to VM ref's suffix and returns the VM it answers with.
func (c *Client) vmVerb(ctx context.Context, ref, suffix string, in any) (api.VM, error) {
	var v api.VM
	path, err := vmPath(ref, suffix)
	if err != nil {
		return v, err
	}
	return v, c.do(ctx, http.MethodPost, path, in, &v)
}
