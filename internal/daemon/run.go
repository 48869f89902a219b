package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vers/internal/agent"
	"vers/internal/image"
	"vers/internal/paths"
	"vers/internal/qemu"
	"vers/internal/rampool"
	"vers/internal/store"
	"vers/internal/vm"
)

// Run is versd: it takes the host's daemon lock, recovers the VMs that
// survived a previous daemon, and serves the API on the owner-only unix
// socket until ctx ends. VMs keep running when it returns.
func Run(ctx context.Context, layout paths.Layout, log *slog.Logger) error {
	if err := os.MkdirAll(layout.VMsDir(), 0o700); err != nil {
		return err
	}
	os.Chmod(layout.Home, 0o700)
	lock, err := os.OpenFile(layout.PIDFile(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("another versd already runs for %s", layout.Home)
	}
	lock.Truncate(0)
	fmt.Fprintf(lock, "%d\n", os.Getpid())

	st, err := store.Open(ctx, layout.Database())
	if err != nil {
		return err
	}
	defer st.Close()
	agentPath, _ := paths.AgentBinary()
	images := image.New(layout.ImageDir, agentPath)
	pool, err := rampool.Ensure(ctx, paths.RAMDir(), paths.RAMPoolDir(), log)
	if err != nil {
		return err
	}
	vcfg := vm.Config{
		Layout: layout, Store: st, Images: images, Log: log,
		Hypervisor: vm.QEMU{}, Dial: agent.Dial, RAM: vm.RAMPool{}, Groups: vm.CgroupGroups{},
		Accel: qemu.DetectAccel(), RAMDir: pool.Dir, CloneRAM: pool.Reflink,
		Host: vm.ReadHostLimits(layout.VMsDir()), BootTimeout: bootTimeout(),
	}
	if pool.Reflink {
		vcfg.Returner = rampool.NewReturner(pool.Dir, log)
	}
	vms := vm.New(vcfg)
	if err := vms.Recover(ctx); err != nil {
		return fmt.Errorf("recover vms: %w", err)
	}
	go vms.Watch(ctx, 2*time.Second)
	go vms.PruneImages(ctx, images)

	sock := layout.Socket()
	os.Remove(sock) // we hold the lock, so any socket file is stale
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", sock)
	syscall.Umask(old)
	if err != nil {
		return err
	}
	os.Chmod(sock, 0o600)
	srv := &http.Server{Handler: New(vms, images, log).Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("versd listening", "socket", sock, "pid", os.Getpid(), "accel", vms.Accel(), "home", filepath.Clean(layout.Home))
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// bootTimeout is 90 s, or VERS_BOOT_TIMEOUT (a Go duration) when set.
func bootTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("VERS_BOOT_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 90 * time.Second
}
