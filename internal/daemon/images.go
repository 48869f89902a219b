package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/image"
	"vers/internal/vm"
)

// ImageStore is what the daemon needs of the image cache. *image.Store
// implements it; the handlers' tests give a fake, since a real build runs
// debootstrap.
type ImageStore interface {
	Names() []string
	Get(name string) (image.Info, error)
	List() ([]image.Status, error)
	Build(ctx context.Context, name string, force bool, progress io.Writer) (image.Info, error)
}

var _ ImageStore = (*image.Store)(nil)

// Images runs the image builds of the daemon: those its clients ask for and
// those a VM create needs. There is one build of an image at a time, which
// every caller that wants it joins: each sees its progress from the start
// and its result. A caller that goes away stops waiting; the build itself is
// cancelled only when nobody waits for it any more, and the store then
// leaves nothing of it behind.
type Images struct {
	store ImageStore
	base  context.Context // ends the builds when the daemon stops

	mu      sync.Mutex
	running map[string]*imageBuild
}

// The vm domain builds the images a create needs through the same builds.
var _ vm.Images = (*Images)(nil)

// NewImages returns the builds of store; they end with ctx.
func NewImages(ctx context.Context, store ImageStore) *Images {
	return &Images{store: store, base: ctx, running: map[string]*imageBuild{}}
}

func (im *Images) Names() []string                     { return im.store.Names() }
func (im *Images) Get(name string) (image.Info, error) { return im.store.Get(name) }
func (im *Images) List() ([]image.Status, error)       { return im.store.List() }

// Ensure returns the current build of name, joining or starting its build
// if it has none; progress, if not nil, gets the build's output lines.
func (im *Images) Ensure(ctx context.Context, name string, progress io.Writer) (image.Info, error) {
	return im.Build(ctx, name, false, func(line string) {
		if progress != nil {
			fmt.Fprintln(progress, line)
		}
	})
}

// Build returns a build of name, calling onLine with each line of its
// progress. Without force a current build is returned as it is. With force
// a build under way is joined rather than followed by another: it is new
// too. Cancelling ctx ends this caller's wait.
func (im *Images) Build(ctx context.Context, name string, force bool, onLine func(string)) (image.Info, error) {
	if !force {
		info, err := im.store.Get(name)
		if err == nil || !errors.Is(err, image.ErrNotBuilt) {
			return info, err
		}
	}
	b := im.join(name, force)
	defer im.leave(name, b)
	return b.wait(ctx, name, onLine)
}

// join returns the build of name under way, or starts one.
func (im *Images) join(name string, force bool) *imageBuild {
	im.mu.Lock()
	defer im.mu.Unlock()
	if b := im.running[name]; b != nil {
		b.waiters++
		return b
	}
	ctx, cancel := context.WithCancel(im.base)
	b := &imageBuild{cancel: cancel, waiters: 1, changed: make(chan struct{})}
	im.running[name] = b
	go func() {
		info, err := im.store.Build(ctx, name, force, b)
		b.finish(info, err)
		cancel()
		im.mu.Lock()
		if im.running[name] == b {
			delete(im.running, name)
		}
		im.mu.Unlock()
	}()
	return b
}

// leave ends one wait; the last one to go cancels the build if it is still
// under way. A caller that comes after that starts a build of its own,
// which waits (in the store's lock) until the cancelled one has cleaned up.
func (im *Images) leave(name string, b *imageBuild) {
	im.mu.Lock()
	defer im.mu.Unlock()
	b.waiters--
	if b.waiters > 0 {
		return
	}
	b.cancel()
	if im.running[name] == b {
		delete(im.running, name)
	}
}

// waiting is how many callers wait for the build of name under way.
func (im *Images) waiting(name string) int {
	im.mu.Lock()
	defer im.mu.Unlock()
	if b := im.running[name]; b != nil {
		return b.waiters
	}
	return 0
}

// imageBuild is one build under way. It is the progress writer the store
// writes to; it keeps every line, so that a caller who joins late sees the
// build from its start.
type imageBuild struct {
	cancel  context.CancelFunc
	waiters int // guarded by Images.mu

	mu       sync.Mutex
	lines    []string
	partial  []byte
	changed  chan struct{} // closed, and replaced, at every new line and at the end
	finished bool
	info     image.Info
	err      error
}

func (b *imageBuild) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.partial[:i]))
		b.partial = b.partial[i+1:]
		added = true
	}
	if added {
		b.notify()
	}
	return len(p), nil
}

func (b *imageBuild) finish(info image.Info, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.partial) > 0 {
		b.lines = append(b.lines, string(b.partial))
		b.partial = nil
	}
	b.finished, b.info, b.err = true, info, err
	b.notify()
}

// notify wakes the waiters; b.mu is held.
func (b *imageBuild) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// wait hands every line to onLine, from the first, until the build ends or
// ctx does.
func (b *imageBuild) wait(ctx context.Context, name string, onLine func(string)) (image.Info, error) {
	next := 0
	for {
		b.mu.Lock()
		lines := b.lines[next:]
		next = len(b.lines)
		changed, finished, info, err := b.changed, b.finished, b.info, b.err
		b.mu.Unlock()
		for _, l := range lines {
			onLine(l)
		}
		if finished {
			return info, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return image.Info{}, fmt.Errorf("build %s: %w", name, ctx.Err())
		}
	}
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	list, err := s.images.List()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]api.Image, 0, len(list))
	for _, st := range list {
		out = append(out, imageToAPI(st))
	}
	writeJSON(w, http.StatusOK, out)
}

// buildImage builds an image and streams the build to the client as JSON
// lines (application/x-ndjson): {"progress": …} for each line of output,
// then exactly one {"image": …} or {"error": …}. A streamed response rather
// than a WebSocket: the client only listens, any HTTP client reads it (a
// browser with fetch and a stream reader, curl), and a client that goes
// away ends the request's context, which a hijacked connection would not.
// Bad input is refused with an error status before the stream starts.
func (s *Server) buildImage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	force, err := queryBool(r, "force")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if names := s.images.Names(); !slices.Contains(names, name) {
		s.writeError(w, r, fmt.Errorf("image %q: %w (known: %s): %w", name, image.ErrUnknown, strings.Join(names, ", "), errdefs.ErrInvalid))
		return
	}
	drain(w, r) // the server notices a client that hangs up only once the body is read

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(ev api.BuildEvent) {
		enc.Encode(ev)
		rc.Flush()
	}
	rc.Flush() // the headers go now: a build may be silent for a while
	info, err := s.images.Build(r.Context(), name, force, func(line string) {
		send(api.BuildEvent{Progress: line})
	})
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away; nobody to answer
		}
		err = imageErr(err)
		code := errdefs.Code(err)
		if code == api.CodeInternal {
			s.log.Error("image build failed", "image", name, "err", err)
		}
		send(api.BuildEvent{Error: &api.Error{Code: code, Message: errdefs.Message(err)}})
		return
	}
	img := imageToAPI(image.Status{Name: info.Name, Kind: info.Kind, State: image.StateBuilt, Info: info})
	send(api.BuildEvent{Image: &img})
}

// imageErr gives the store's errors their kinds.
func imageErr(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		// Not the client's: the daemon's own context ended.
		return fmt.Errorf("%w: versd stopped during the build; run it again: %w", err, errdefs.ErrUnavailable)
	case errors.Is(err, image.ErrUnknown):
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	case errors.Is(err, image.ErrMissingTool):
		return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	return err
}

func imageToAPI(s image.Status) api.Image {
	return api.Image{
		Name: s.Name, Kind: string(s.Kind), Status: string(s.State),
		SizeMiB: s.Info.SizeMiB, Built: s.Info.Built, Recipe: s.Info.Recipe,
	}
}
