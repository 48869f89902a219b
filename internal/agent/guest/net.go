package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// NetConfig is the guest side of QEMU user networking.
type NetConfig struct {
	Iface   string    // e.g. eth0
	Addr    net.IPNet // e.g. 10.0.2.15/24
	Gateway net.IP    // e.g. 10.0.2.2
	DNS     net.IP    // e.g. 10.0.2.3
	// Sysfs, if set, is where to look for a network device before waiting
	// for Iface (see hasNetDevice).
	Sysfs string
}

// DefaultNet is the guest's side of the network vers gives VMs (the driver's
// passt is configured to match, internal/qemu/passt.go); the addresses are
// those of QEMU's user networking.
var DefaultNet = NetConfig{
	Iface:   "eth0",
	Addr:    net.IPNet{IP: net.IPv4(10, 0, 2, 15).To4(), Mask: net.CIDRMask(24, 32)},
	Gateway: net.IPv4(10, 0, 2, 2).To4(),
	DNS:     net.IPv4(10, 0, 2, 3).To4(),
	Sysfs:   "/sys",
}

// ErrNoNetDevice: the machine has no network device (a VM made with no
// network); only lo is up.
var ErrNoNetDevice = errors.New("no network device: loopback only")

// SetupNetwork brings lo up, then the interface with its address and default
// route, through rtnetlink (no dependency on tools in the root filesystem).
// It writes /etc/resolv.conf only if the image has none. On a machine with
// no virtio network device it returns ErrNoNetDevice at once instead of
// waiting for an interface that will never come.
func SetupNetwork(cfg NetConfig, wait time.Duration) error {
	nl, err := dialNetlink()
	if err != nil {
		return err
	}
	defer nl.close()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return err
	}
	if err := nl.linkUp(lo.Index); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	if cfg.Sysfs != "" && !hasNetDevice(cfg.Sysfs) {
		return ErrNoNetDevice
	}
	var ifc *net.Interface
	deadline := time.Now().Add(wait)
	for {
		if ifc, err = net.InterfaceByName(cfg.Iface); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("interface %s: %w", cfg.Iface, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := nl.addAddr(ifc.Index, cfg.Addr); err != nil && err != unix.EEXIST {
		return fmt.Errorf("address %s on %s: %w", cfg.Addr.String(), cfg.Iface, err)
	}
	if err := nl.linkUp(ifc.Index); err != nil {
		return fmt.Errorf("%s up: %w", cfg.Iface, err)
	}
	if err := nl.addDefaultRoute(ifc.Index, cfg.Gateway); err != nil && err != unix.EEXIST {
		return fmt.Errorf("default route via %s: %w", cfg.Gateway, err)
	}
	if cfg.DNS != nil {
		if fi, err := os.Stat("/etc/resolv.conf"); err != nil || fi.Size() == 0 {
			os.Remove("/etc/resolv.conf") // possibly a dangling symlink
			os.WriteFile("/etc/resolv.conf", []byte("nameserver "+cfg.DNS.String()+"\n"), 0o644)
		}
	}
	return nil
}

// virtioNet is the virtio device id of a network card.
const virtioNet = 0x0001

// hasNetDevice reports whether sysfs (mounted at sys) lists a virtio
// network device. The initramfs loads virtio_net before the agent runs, so
// a device that exists is listed by then; its interface may come later.
func hasNetDevice(sys string) bool {
	devs, _ := filepath.Glob(filepath.Join(sys, "bus/virtio/devices/*/device"))
	for _, d := range devs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		if id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 32); err == nil && id == virtioNet {
			return true
		}
	}
	return false
}

type netlinkConn struct {
	fd  int
	seq uint32
}

func dialNetlink() (*netlinkConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &netlinkConn{fd: fd}, nil
}

func (c *netlinkConn) close() { unix.Close(c.fd) }

// attr appends one rtattr.
func attr(b []byte, typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	h := make([]byte, unix.SizeofRtAttr)
	binary.NativeEndian.PutUint16(h[0:], uint16(l))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(b, h...)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// request sends one message and waits for its acknowledgement.
func (c *netlinkConn) request(typ uint16, flags uint16, body []byte) error {
	c.seq++
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], c.seq)
	msg = append(msg, body...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
}

func (c *netlinkConn) linkUp(index int) error {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], unix.IFF_UP)  // flags
	binary.NativeEndian.PutUint32(b[12:], unix.IFF_UP) // change mask
	return c.request(unix.RTM_NEWLINK, 0, b)
}

func (c *netlinkConn) addAddr(index int, addr net.IPNet) error {
	ip := addr.IP.To4()
	if ip == nil {
		return fmt.Errorf("%s is not IPv4", addr.IP)
	}
	ones, _ := addr.Mask.Size()
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0] = unix.AF_INET
	b[1] = byte(ones)
	b[3] = unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	b = attr(b, unix.IFA_LOCAL, ip)
	b = attr(b, unix.IFA_ADDRESS, ip)
	return c.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b)
}

func (c *netlinkConn) addDefaultRoute(index int, gw net.IP) error {
	gw4 := gw.To4()
	if gw4 == nil {
		return fmt.Errorf("%s is not IPv4", gw)
	}
	b := make([]byte, unix.SizeofRtMsg)
	b[0] = unix.AF_INET
	b[4] = unix.RT_TABLE_MAIN
	b[5] = unix.RTPROT_BOOT
	b[6] = unix.RT_SCOPE_UNIVERSE
	b[7] = unix.RTN_UNICAST
	b = attr(b, unix.RTA_GATEWAY, gw4)
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(index))
	b = attr(b, unix.RTA_OIF, oif)
	return c.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b)
}
