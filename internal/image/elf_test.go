package image

import (
	"bytes"
	"encoding/binary"
)

// fakeKernel returns a minimal x86-64 executable ELF whose only program
// header is a PT_NOTE holding notes; with pvh it includes the Xen PVH entry
// note, as Linux's vmlinux does.
func fakeKernel(pvh bool, entry uint32) []byte {
	le := binary.LittleEndian
	var notes bytes.Buffer
	note := func(name string, typ uint32, desc []byte) {
		n := append([]byte(name), 0)
		binary.Write(&notes, le, uint32(len(n)))
		binary.Write(&notes, le, uint32(len(desc)))
		binary.Write(&notes, le, typ)
		notes.Write(pad4(n))
		notes.Write(pad4(desc))
	}
	note("GNU", 3, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if pvh {
		d := make([]byte, 4)
		le.PutUint32(d, entry)
		note("Xen", xenElfnotePhys32Entry, d)
	}
	const ehsize, phsize = 64, 56
	var b bytes.Buffer
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	b.Write(make([]byte, 8))
	binary.Write(&b, le, uint16(2))  // ET_EXEC
	binary.Write(&b, le, uint16(62)) // EM_X86_64
	binary.Write(&b, le, uint32(1))
	binary.Write(&b, le, uint64(0x1000000)) // entry
	binary.Write(&b, le, uint64(ehsize))    // phoff
	binary.Write(&b, le, uint64(0))         // shoff
	binary.Write(&b, le, uint32(0))
	binary.Write(&b, le, uint16(ehsize))
	binary.Write(&b, le, uint16(phsize))
	binary.Write(&b, le, uint16(1)) // phnum
	binary.Write(&b, le, uint16(64))
	binary.Write(&b, le, uint16(0))
	binary.Write(&b, le, uint16(0))
	off := uint64(ehsize + phsize)
	binary.Write(&b, le, uint32(4)) // PT_NOTE
	binary.Write(&b, le, uint32(4))
	binary.Write(&b, le, off)
	binary.Write(&b, le, uint64(0))
	binary.Write(&b, le, uint64(0))
	binary.Write(&b, le, uint64(notes.Len()))
	binary.Write(&b, le, uint64(notes.Len()))
	binary.Write(&b, le, uint64(4))
	b.Write(notes.Bytes())
	b.Write(bytes.Repeat([]byte("kernel text "), 500))
	return b.Bytes()
}

// fakeModule returns a minimal relocatable ELF with a .modinfo section
// holding the given key=value strings, like a kernel module.
func fakeModule(modinfo ...string) []byte {
	le := binary.LittleEndian
	var info []byte
	for _, kv := range modinfo {
		info = append(info, kv...)
		info = append(info, 0)
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shsize = 64, 64
	infoOff := uint64(ehsize)
	strOff := infoOff + uint64(len(info))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7
	var b bytes.Buffer
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	b.Write(make([]byte, 8))
	binary.Write(&b, le, uint16(1)) // ET_REL
	binary.Write(&b, le, uint16(62))
	binary.Write(&b, le, uint32(1))
	binary.Write(&b, le, uint64(0))
	binary.Write(&b, le, uint64(0))
	binary.Write(&b, le, shOff)
	binary.Write(&b, le, uint32(0))
	binary.Write(&b, le, uint16(ehsize))
	binary.Write(&b, le, uint16(0))
	binary.Write(&b, le, uint16(0))
	binary.Write(&b, le, uint16(shsize))
	binary.Write(&b, le, uint16(3)) // shnum
	binary.Write(&b, le, uint16(2)) // shstrndx
	b.Write(info)
	b.Write(shstr)
	for uint64(b.Len()) < shOff {
		b.WriteByte(0)
	}
	sh := func(name, typ uint32, off, size uint64) {
		binary.Write(&b, le, name)
		binary.Write(&b, le, typ)
		binary.Write(&b, le, uint64(0)) // flags
		binary.Write(&b, le, uint64(0)) // addr
		binary.Write(&b, le, off)
		binary.Write(&b, le, size)
		binary.Write(&b, le, uint32(0))
		binary.Write(&b, le, uint32(0))
		binary.Write(&b, le, uint64(1))
		binary.Write(&b, le, uint64(0))
	}
	sh(0, 0, 0, 0)
	sh(1, 1, infoOff, uint64(len(info))) // .modinfo, SHT_PROGBITS
	sh(10, 3, strOff, uint64(len(shstr)))
	return b.Bytes()
}
