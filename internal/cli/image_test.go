package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
)

func TestImageBuild(t *testing.T) {
	e := newEnv(t)
	if code := e.run("image", "build"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	// Every known image, in the daemon's order; the kernel was built already.
	want := []buildCall{{"default.bin", false}, {"default", false}}
	if !slices.Equal(e.d.builds, want) {
		t.Fatalf("builds %v, want %v", e.d.builds, want)
	}
	if got := e.out.String(); got != "default.bin: kernel image ready (12 MiB)\ndefault: rootfs image ready (1024 MiB)\n" {
		t.Fatalf("stdout %q", got)
	}
	if got := e.errOut.String(); got != "[default] building\n" {
		t.Fatalf("stderr %q: want the rootfs build's progress only", got)
	}

	e.d.builds = nil
	if code := e.run("image", "build", "--force", "default.bin"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	if want := []buildCall{{"default.bin", true}}; !slices.Equal(e.d.builds, want) {
		t.Fatalf("builds %v, want %v", e.d.builds, want)
	}
	if !strings.Contains(e.errOut.String(), "[default.bin] building") {
		t.Fatalf("stderr %q: a forced build shows its progress", e.errOut)
	}
}

func TestImageBuildFailures(t *testing.T) {
	e := newEnv(t)
	if code := e.run("image", "build", "no-such"); code != ExitInvalid {
		t.Fatalf("unknown image: exit %d, want %d", code, ExitInvalid)
	}
	if !strings.Contains(e.errOut.String(), `image "no-such": unknown image`) {
		t.Fatalf("stderr %q", e.errOut)
	}

	e.d.build = func(context.Context, string, io.Writer) error {
		return &client.Error{Status: 200, Code: api.CodeUnavailable, Message: "building default needs debootstrap; install with: apt-get install debootstrap"}
	}
	err := runImageBuild(context.Background(), &ImageBuildOptions{f: e.f, Client: e.f.Client, Names: []string{"default"}})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "apt-get install debootstrap") {
		t.Fatalf("missing tool: %v, want the unavailable kind and what to install", err)
	}
	if code := e.run("image", "build", "default"); code != ExitError || !strings.Contains(e.errOut.String(), "apt-get install debootstrap") {
		t.Fatalf("missing tool: exit %d, stderr %q", code, e.errOut)
	}
	if e.out.Len() != 0 {
		t.Fatalf("stdout %q after a failed build", e.out)
	}
}

// interruptingBuild is a build that the user interrupts half way: it shows a
// line of progress, then the signal comes (cancel), and it ends as the
// client does when its context ends.
func interruptingBuild(cancel context.CancelFunc) func(context.Context, string, io.Writer) error {
	return func(ctx context.Context, name string, progress io.Writer) error {
		fmt.Fprintf(progress, "[%s] step 1/3: debootstrap…\n", name)
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}
}

func TestImageBuildInterrupted(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.d.build = interruptingBuild(cancel)
	if code := Main(ctx, e.f, []string{"image", "build", "default"}); code != ExitCancelled {
		t.Fatalf("exit %d, want %d", code, ExitCancelled)
	}
	want := "[default] step 1/3: debootstrap…\nvers: image default: build interrupted; versd keeps nothing of it unless another client still waits for it\n"
	if got := e.errOut.String(); got != want {
		t.Fatalf("stderr %q, want %q", got, want)
	}
}

func TestImageLs(t *testing.T) {
	e := newEnv(t)
	if code := e.run("image", "ls"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	lines := strings.Split(strings.TrimRight(e.out.String(), "\n"), "\n")
	want := []string{
		`^NAME +KIND +STATE +SIZE +BUILT$`,
		`^default\.bin +kernel +built +12 MiB +\d{4}-\d\d-\d\d \d\d:\d\d$`,
		`^default +rootfs +missing +- +-$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("stdout %q", e.out)
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d %q does not match %s", i, lines[i], re)
		}
	}

	if code := e.run("image", "ls", "--format", "json"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	var got []api.Image
	if err := json.Unmarshal(e.out.Bytes(), &got); err != nil {
		t.Fatalf("json %q: %v", e.out, err)
	}
	if len(got) != 2 || got[0].Name != "default.bin" || got[0].Status != api.ImageBuilt || got[1].Name != "default" || got[1].Status != api.ImageMissing {
		t.Fatalf("json %+v", got)
	}
	if len(e.d.builds) != 0 {
		t.Fatalf("ls built %v", e.d.builds)
	}
}

// TestRunBuildsImages: `vers run` has versd build what is missing, with the
// build's progress before the boot, and boots nothing when a build fails.
func TestRunBuildsImages(t *testing.T) {
	e := newEnv(t)
	if code := e.run("run", "--vm-alias", "fresh"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	if want := []buildCall{{"default.bin", false}, {"default", false}}; !slices.Equal(e.d.builds, want) {
		t.Fatalf("builds %v, want %v", e.d.builds, want)
	}
	if !regexp.MustCompile(`^\[default\] building\nBooting VM`).MatchString(e.errOut.String()) {
		t.Fatalf("stderr %q: want the build's progress, then the boot", e.errOut)
	}

	// Built now: the next run builds nothing and says nothing of images.
	e.d.build = func(context.Context, string, io.Writer) error { t.Error("built an image that is built"); return nil }
	if code := e.run("run", "-q"); code != 0 || e.errOut.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.errOut)
	}

	e.d.created = nil
	if code := e.run("run", "--rootfs", "no-such"); code != ExitInvalid || len(e.d.created) != 0 {
		t.Fatalf("unknown rootfs: exit %d, created %v", code, e.d.created)
	}

	e.d.images[1].Status = api.ImageStale
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.d.build = interruptingBuild(cancel)
	e.errOut.Reset()
	if code := Main(ctx, e.f, []string{"run"}); code != ExitCancelled || len(e.d.created) != 0 {
		t.Fatalf("interrupted: exit %d, created %v", code, e.d.created)
	}
	if got := e.errOut.String(); !strings.HasSuffix(got, "vers: image default: build interrupted; versd keeps nothing of it unless another client still waits for it\n") || strings.Contains(got, "Booting") {
		t.Fatalf("stderr %q", got)
	}
}
