// Package revert undoes the finished steps of a multi-step operation that
// failed part way, newest first, so a failure leaves nothing half-done.
package revert

// Reverter collects undo functions.
type Reverter struct {
	undo []func()
}

func New() *Reverter { return &Reverter{} }

// Add registers f to run if the operation fails.
func (r *Reverter) Add(f func()) { r.undo = append(r.undo, f) }

// Fail runs every registered undo, newest first. After Success it does nothing,
// so `defer r.Fail()` is always safe.
func (r *Reverter) Fail() {
	for i := len(r.undo) - 1; i >= 0; i-- {
		r.undo[i]()
	}
	r.undo = nil
}

// Success forgets the undo functions: the operation is complete.
func (r *Reverter) Success() { r.undo = nil }
