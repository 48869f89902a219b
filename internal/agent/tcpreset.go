package agent

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A guest made from another's saved state (a branch child, a restored
// commit, a woken VM) holds the TCP connections its original had, but its
// network is new: the peers' side of each connection went on with the
// original, or is gone. Left alone, an application waiting on such a
// connection would wait until TCP gives up (up to a quarter of an hour, or
// forever without keepalive). So the agent resets them: the application
// sees ECONNRESET at once and can reconnect.
//
// Each such socket is taken from its process with pidfd_getfd and
// disconnected with connect(AF_UNSPEC), which is a TCP abort: the socket
// gets ECONNRESET and sends an RST. The RST goes to this guest's new network,
// which has no such connection and drops it: the original's peer never sees
// it. (sock_diag's SOCK_DESTROY would do the same, but needs kernel modules
// the guest does not carry.) Connections within the guest — over loopback
// or to one of its own addresses — have both ends in the copy and are kept.

// tcpSocket is one line of /proc/net/tcp or /proc/net/tcp6.
type tcpSocket struct {
	local, remote netip.AddrPort
	state         uint64
	inode         uint64
}

// tcpWithPeer are the states of /proc/net/tcp's "st" column in which a
// socket has a peer that may be waiting on it or it on the peer:
// ESTABLISHED, SYN_SENT, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK,
// CLOSING. (SYN_RECV entries are requests with no socket of their own;
// TIME_WAIT has no owner; LISTEN no peer.)
var tcpWithPeer = map[uint64]bool{0x01: true, 0x02: true, 0x04: true, 0x05: true, 0x08: true, 0x09: true, 0x0B: true}

// parseProcNetTCP reads the sockets of a /proc/net/tcp or tcp6 file.
func parseProcNetTCP(text string) ([]tcpSocket, error) {
	var out []tcpSocket
	sc := bufio.NewScanner(strings.NewReader(text))
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		local, err := parseProcAddr(f[1])
		if err != nil {
			return nil, err
		}
		remote, err := parseProcAddr(f[2])
		if err != nil {
			return nil, err
		}
		state, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("tcp state %q: %w", f[3], err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("tcp inode %q: %w", f[9], err)
		}
		out = append(out, tcpSocket{local: local, remote: remote, state: state, inode: inode})
	}
	return out, sc.Err()
}

// parseProcAddr reads "0100007F:1F90" (IPv4) or 32 hex digits and a port
// (IPv6): the address as the kernel's 32-bit words in host order (little
// endian here), the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil {
		return netip.AddrPort{}, fmt.Errorf("socket address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("socket address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// outsideSockets are the inodes of the sockets in files (/proc/net/tcp and
// tcp6 texts) that have a peer not inside this machine.
func outsideSockets(inside func(netip.AddrPort) bool, files ...string) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	for _, text := range files {
		socks, err := parseProcNetTCP(text)
		if err != nil {
			return nil, err
		}
		for _, s := range socks {
			if tcpWithPeer[s.state] && s.inode != 0 && !inside(s.remote) {
				out[s.inode] = true
			}
		}
	}
	return out, nil
}

// insideMachine says whether an address is this machine's own: loopback,
// or one of its interfaces' (a connection to it has both ends here). The
// interfaces are read once, the first time an address is not loopback.
func insideMachine() func(netip.AddrPort) bool {
	var own map[netip.Addr]bool
	return func(ap netip.AddrPort) bool {
		a := ap.Addr()
		if a.IsLoopback() || a.IsUnspecified() {
			return true
		}
		if own == nil {
			own = map[netip.Addr]bool{}
			addrs, _ := net.InterfaceAddrs() // none known: nothing else is inside
			for _, x := range addrs {
				if n, ok := x.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(n.IP); ok {
						own[ip.Unmap()] = true
					}
				}
			}
		}
		return own[a]
	}
}

// ResetTCP resets every connection of this machine's network namespace
// to another machine.
func (LinuxSystem) ResetTCP() (int, error) { return resetTCP("/proc", insideMachine()) }

// resetTCP resets, through the processes under proc that own them, the
// sockets of proc/net/tcp{,6} whose peer is not inside. A socket is reset
// once however many descriptors name it; one that goes away meanwhile is
// skipped.
func resetTCP(proc string, inside func(netip.AddrPort) bool) (int, error) {
	var texts []string
	for _, name := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(proc, "net", name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
		texts = append(texts, string(b))
	}
	targets, err := outsideSockets(inside, texts...)
	if err != nil || len(targets) == 0 {
		return 0, err
	}
	pids, err := os.ReadDir(proc)
	if err != nil {
		return 0, err
	}
	reset := 0
	var firstErr error
	for _, p := range pids {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(proc, p.Name(), "fd"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(proc, p.Name(), "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			inode, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
			if err != nil || !targets[inode] {
				continue
			}
			n, _ := strconv.Atoi(fd.Name())
			if err := abortSocket(pid, n, inode); err != nil {
				if firstErr == nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.EBADF) {
					firstErr = fmt.Errorf("socket %d of pid %d: %w", inode, pid, err)
				}
				continue
			}
			delete(targets, inode)
			reset++
		}
	}
	return reset, firstErr
}

// abortSocket takes descriptor fd of process pid and, if it still is
// socket inode, disconnects it: connect(AF_UNSPEC), a TCP abort.
func abortSocket(pid, fd int, inode uint64) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dup)
	var st unix.Stat_t
	if err := unix.Fstat(dup, &st); err != nil {
		return err
	}
	if st.Ino != inode {
		return unix.EBADF // the descriptor was reused meanwhile
	}
	sa := unix.RawSockaddr{Family: unix.AF_UNSPEC}
	if _, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(dup), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)); errno != 0 {
		return errno
	}
	return nil
}
