// Package fault holds failure-injection points for tests of multi-step
// operations: a test starts versd with VERS_FAILPOINTS=name,name and the
// named steps fail, so the suite can prove every step's undo. Without the
// variable, Check never fails and costs one map lookup.
package fault

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

var (
	once   sync.Once
	points map[string]bool
)

// Check returns an error if the failure point name is enabled.
func Check(name string) error {
	once.Do(func() {
		points = map[string]bool{}
		for _, p := range strings.Split(os.Getenv("VERS_FAILPOINTS"), ",") {
			if p = strings.TrimSpace(p); p != "" {
				points[p] = true
			}
		}
	})
	if points[name] {
		return fmt.Errorf("injected failure at %s", name)
	}
	return nil
}

// Crash ends the process at once, as kill -9 would, if the failure point
// name is enabled: for tests of what a restarted daemon finds.
func Crash(name string) {
	if Check(name) != nil {
		os.Exit(137)
	}
}
