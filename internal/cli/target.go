package cli

import (
	"context"
	"errors"
	"fmt"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/project"
)

// headRef returns the VM a command acts on: the one named, or HEAD of the
// project in the working directory.
func (f *Factory) headRef(arg string) (string, error) {
	if arg != "" {
		return arg, nil
	}
	p, err := f.Project()
	if err != nil {
		if errors.Is(err, project.ErrNoProject) {
			return "", fmt.Errorf("no VM named and no project here to take HEAD from; name a VM or run in a `vers init` directory: %w", errdefs.ErrInvalid)
		}
		return "", err
	}
	head, err := p.Head()
	if err != nil {
		return "", err
	}
	if head == "" {
		return "", fmt.Errorf("no VM named and HEAD is not set; `vers run` or `vers checkout VM` sets it: %w", errdefs.ErrInvalid)
	}
	return head, nil
}

// clientFunc gives a command its daemon; options structs carry one, so that
// run functions are tested on a fake.
type clientFunc func(context.Context) (Daemon, error)

// target is headRef plus a client of the daemon: what every command that
// acts on one VM starts with.
func (f *Factory) target(ctx context.Context, newClient clientFunc, arg string) (string, Daemon, error) {
	ref, err := f.headRef(arg)
	if err != nil {
		return "", nil, err
	}
	c, err := newClient(ctx)
	if err != nil {
		return "", nil, err
	}
	return ref, c, nil
}

// headGone explains a not-found error for a VM that came from HEAD: HEAD
// still names a VM that has been killed since.
func headGone(ref string, fromHead bool, err error) error {
	if err != nil && fromHead && errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("HEAD names VM %s, which no longer exists; `vers checkout VM` picks another: %w", ref, errdefs.ErrNotFound)
	}
	return err
}

func label(v api.VM) string {
	if v.Alias != "" {
		return v.Alias
	}
	return v.ID
}

// aliasOrNone is v's alias, or says it has none.
func aliasOrNone(v api.VM) string {
	if v.Alias == "" {
		return "(no alias)"
	}
	return v.Alias
}

// moveHead points p's HEAD at the VM id ("" clears it) and tells versd, so
// that commands run elsewhere (`vers pick`) know whose HEAD a VM is. The
// file is what commands in p act on; versd's record is a guard for other
// directories, checked against the file where it can be read, so a failure
// to report is not the command's failure.
func moveHead(ctx context.Context, c Daemon, p *project.Project, id string) error {
	if err := p.SetHead(id); err != nil {
		return err
	}
	c.SetHead(ctx, p.Dir, id)
	return nil
}
