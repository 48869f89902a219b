package vm

import (
	"sync"

	"vers/internal/rampool"
)

// Page-ins of a child's RAM (rampool: a child reads each page its guest
// touches through the RAM filesystem, at the fault). The pages a child's
// guest touches as it is handed over are nearly the same for every child
// of one VM: the guest kernel's, the agent's. So once the first child of a
// branch is up, the pages its QEMU has mapped are noted for its parent,
// and every later child of that parent (the rest of a --count, the next
// branch) has them read into its own RAM file as soon as the file is
// cloned, while its QEMU loads the device state, instead of one fault at a
// time while its guest waits. The children inherit the note: their own
// children will touch much the same pages. It is a hint, in memory only;
// without one, or when it fails, a child pages in as before.

// pageIns holds, per VM id (or commit, for VMs started from one), the RAM
// ranges its last child touched in its handover: []rampool.Range.
type pageIns struct{ m sync.Map }

func (p *pageIns) get(key string) []rampool.Range {
	if v, ok := p.m.Load(key); ok {
		return v.([]rampool.Range)
	}
	return nil
}

func (p *pageIns) set(key string, r []rampool.Range) { p.m.Store(key, r) }
func (p *pageIns) drop(key string)                   { p.m.Delete(key) }

// pageInKey is whose children this branch's children are.
func (b *branch) pageInKey() string {
	if b.origin != nil {
		return "commit " + b.origin.ID
	}
	return b.parent.ID
}

// prefetchRAM starts reading the noted pages into a child's RAM file, in
// the background: submitting the reads takes 10–20 ms (the page cache's
// memory is allocated as they are), which the device state's load need
// not wait for. A fault on a page being read waits for that read.
func (b *branch) prefetchRAM(path string) {
	r := b.m.pageIns.get(b.pageInKey())
	if len(r) == 0 {
		return
	}
	b.prefetches.Add(1)
	go func() {
		defer b.prefetches.Done()
		if err := b.m.cfg.RAM.Prefetch(path, r); err != nil {
			b.m.log.Debug("child RAM not prefetched", "file", path, "reason", err)
		}
	}()
}

// notePageIns notes the pages a child that is up has mapped, once per
// branch: for the first child ready.
func (b *branch) notePageIns(mc *machine) {
	b.pageInsOnce.Do(func() {
		cfg := mc.inst.Config()
		r, err := b.m.cfg.RAM.Mapped(mc.inst.PID(), cfg.MemPath)
		if err != nil {
			b.m.log.Debug("child RAM page-ins not noted", "vm", cfg.Name, "reason", err)
			return
		}
		b.m.pageIns.set(b.pageInKey(), r)
	})
}

// inheritPageIns gives the children the note their parent has.
func (b *branch) inheritPageIns() {
	if r := b.m.pageIns.get(b.pageInKey()); len(r) > 0 {
		for _, k := range b.kids {
			b.m.pageIns.set(k.ID, r)
		}
	}
}
