// Package fault holds failure-injection points for tests of multi-step
// operations: a test starts versd with VERS_FAILPOINTS=name,name and the
// named steps fail, so the suite can prove every step's undo. Without the
// variable, Check never fails and costs one map lookup.
package fault

import (
	"fmt"
	"os"
	"sync"
)

var (
	mu     sync.RWMutex
	points = map[string]bool{}
)

// Enable makes the named failure points fail (versd calls it once with
// VERS_FAILPOINTS).
func Enable(names ...string) {
	mu.Lock()
	defer mu.Unlock()
	for _, n := range names {
		points[n] = true
	}
}

// Check returns an error if the failure point name is enabled.
func Check(name string) error {
	mu.RLock()
	on := points[name]
	mu.RUnlock()
	if on {
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
