// Package poll waits for a condition that no event announces — a QEMU
// status, a file that appears, a process that ends — by checking it at a
// fixed interval until it holds, fails, or a context ends. It never waits
// without a context: a caller that must not hang gives one with a deadline.
package poll

import (
	"context"
	"time"
)

// Until checks cond at once and then every `every` until it reports done
// (nil), fails (its error), or ctx ends (ctx.Err()).
func Until(ctx context.Context, every time.Duration, cond func() (done bool, err error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		done, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
