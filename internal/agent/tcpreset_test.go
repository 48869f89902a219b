package agent

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestParseProcNetTCP(t *testing.T) {
	const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0F02000A:D2F4 4B8C15C1:0050 01 00000000:00000000 02:000AE9B1 00000000     0        0 2222 2 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 20 4 30 10 -1
   3: 0F02000A:D2F6 4B8C15C1:0050 06 00000000:00000000 03:00000F4A 00000000     0        0 0 3 0000000000000000
`
	const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000F02000A:A3E2 0000000000000000FFFF00004B8C15C1:01BB 01 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 20 4 0 10 -1
   1: 00000000000000000000000001000000:0277 00000000000000000000000001000000:D8B2 01 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 20 4 0 10 -1
   2: B80D01200000000000000000EFBEADDE:A3E4 B80D01200000000000000000010000C0:0016 02 00000000:00000000 00:00000000 00000000     0        0 6666 1 0000000000000000 20 4 0 10 -1
`
	socks, err := parseProcNetTCP(tcp)
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 4 {
		t.Fatalf("%d sockets, want 4: %+v", len(socks), socks)
	}
	if got, want := socks[1].local, netip.MustParseAddrPort("10.0.2.15:54004"); got != want {
		t.Errorf("local %v, want %v", got, want)
	}
	if got, want := socks[1].remote, netip.MustParseAddrPort("193.21.140.75:80"); got != want {
		t.Errorf("remote %v, want %v", got, want)
	}
	if socks[1].state != 1 || socks[1].inode != 2222 {
		t.Errorf("state %x inode %d", socks[1].state, socks[1].inode)
	}
	socks6, err := parseProcNetTCP(tcp6)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := socks6[0].remote, netip.MustParseAddrPort("193.21.140.75:443"); got != want {
		t.Errorf("v4-mapped remote %v, want %v (unmapped)", got, want)
	}
	if got, want := socks6[2].remote.Addr(), netip.MustParseAddr("2001:db8::c000:1"); got != want {
		t.Errorf("v6 remote %v, want %v", got, want)
	}

	inside := func(ap netip.AddrPort) bool {
		a := ap.Addr()
		return a.IsLoopback() || a == netip.MustParseAddr("10.0.2.15")
	}
	got, err := outsideSockets(inside, tcp, tcp6)
	if err != nil {
		t.Fatal(err)
	}
	// The listener, the loopback pairs and the TIME_WAIT (no inode) stay;
	// the v4, v4-mapped and v6 connections out go.
	want := map[uint64]bool{2222: true, 4444: true, 6666: true}
	if len(got) != len(want) {
		t.Fatalf("outside sockets %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("socket %d not found outside: %v", k, got)
		}
	}

	for _, bad := range []string{"zz:0050", "0100007F", "0100007F:XYZ", "01007F:0050"} {
		if _, err := parseProcAddr(bad); err == nil {
			t.Errorf("parseProcAddr(%q) accepted", bad)
		}
	}
}

// TestResetTCP resets a real connection of this process — only the one
// to the port picked as "outside" — and checks both ends see a reset while
// another connection goes on.
func TestResetTCP(t *testing.T) {
	serve := func() (net.Listener, chan net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		acc := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				acc <- c
			}
		}()
		return ln, acc
	}
	outLn, outAcc := serve()
	keepLn, keepAcc := serve()
	out, err := net.Dial("tcp", outLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	keep, err := net.Dial("tcp", keepLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	outPeer, keepPeer := <-outAcc, <-keepAcc
	defer outPeer.Close()
	defer keepPeer.Close()

	// A reader already waiting on the connection is woken by the reset.
	blocked := make(chan error, 1)
	go func() {
		outPeer.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := outPeer.Read(make([]byte, 1))
		blocked <- err
	}()
	outPort := netip.MustParseAddrPort(outLn.Addr().String()).Port()
	n, err := resetTCP("/proc", func(ap netip.AddrPort) bool { return ap.Port() != outPort })
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOSYS) {
		t.Skipf("pidfd_getfd: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("reset %d connections, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	out.SetDeadline(deadline)
	if _, err := out.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read on a reset connection: %v, want a reset", err)
	}
	if err := <-blocked; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the waiting reader of the peer got %v, want a reset", err)
	}
	if _, err := out.Write([]byte("x")); err == nil {
		t.Error("write on a reset connection succeeded")
	}
	keep.SetDeadline(deadline)
	keepPeer.SetDeadline(deadline)
	if _, err := keep.Write([]byte("k")); err != nil {
		t.Fatalf("the kept connection: %v", err)
	}
	if _, err := io.ReadFull(keepPeer, make([]byte, 1)); err != nil {
		t.Fatalf("the kept connection: %v", err)
	}
}

func TestWriteMachineID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "machine-id")
	os.WriteFile(path, nil, 0o444)
	const id = "0123456789abcdef0123456789abcdef"
	if err := writeMachineID(path, id); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(b) != id+"\n" || st.Mode().Perm() != 0o444 {
		t.Fatalf("machine-id %q mode %v", b, st.Mode())
	}
	// The same id again leaves the file alone.
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.Chtimes(path, past, past)
	if err := writeMachineID(path, id); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); !after.ModTime().Equal(past) {
		t.Error("an unchanged machine id was written again")
	}
	// Another id of the same length goes over it, in the same file.
	before, _ := os.Stat(path)
	const next = "fedcba9876543210fedcba9876543210"
	if err := writeMachineID(path, next); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	after, _ := os.Stat(path)
	if string(b) != next+"\n" || !os.SameFile(before, after) || after.Mode().Perm() != 0o444 {
		t.Errorf("machine-id %q, mode %v, same file %v", b, after.Mode(), os.SameFile(before, after))
	}
	for _, bad := range []string{"", "0123", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcdeg"} {
		if err := writeMachineID(path, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("machine id %q: %v, want ErrInvalid", bad, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}
