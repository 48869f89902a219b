package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"
)

type UIOptions struct {
	f         *Factory
	Client    clientFunc
	Format    string
	NoBrowser bool
	// Getenv and Open are the environment and the browser launcher
	// (openBrowser); tests give their own.
	Getenv func(string) string
	Open   func(url string) error
}

func NewCmdUI(f *Factory, runF func(context.Context, *UIOptions) error) *cobra.Command {
	opts := &UIOptions{f: f, Client: f.Client, Getenv: os.Getenv, Open: openBrowser}
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Open the web UI: the VM tree, live, terminals in VMs, and their actions",
		Long: `Print a URL of versd's web UI and open it in a browser when this session
has a display ($DISPLAY or $WAYLAND_DISPLAY) and xdg-open.

versd serves the UI on 127.0.0.1 only: on its --listen address when that is
on loopback, or else on a free port it opens at the first vers ui. The URL
carries a one-time login, good for two minutes: the browser that opens it
gets a session cookie (HttpOnly, SameSite=Strict) for 12 hours, and nothing
is served without one. Run vers ui again for another browser.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return dispatch(cmd, opts.Format, opts, runF, runUI)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json (the URL and when it expires)")
	cmd.Flags().BoolVar(&opts.NoBrowser, "no-browser", false, "print the URL only, never open a browser")
	return cmd
}

func runUI(ctx context.Context, o *UIOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	l, err := c.UILogin(ctx)
	if err != nil {
		return err
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(l)
	}
	fmt.Fprintln(o.f.Out, l.URL)
	fmt.Fprintf(o.f.ErrOut, "The URL logs one browser in to the web UI, once, within %s.\n", time.Until(l.ExpiresAt).Round(time.Second))
	if !o.NoBrowser && hasDisplay(o.Getenv) {
		if err := o.Open(l.URL); err != nil {
			// No browser is no failure: the URL is printed.
			fmt.Fprintf(o.f.ErrOut, "Could not open a browser (%v); open the URL yourself.\n", err)
		} else {
			fmt.Fprintln(o.f.ErrOut, "Opened it in your browser.")
		}
	}
	return nil
}

// hasDisplay says whether a browser could show a window here.
func hasDisplay(getenv func(string) string) bool {
	return getenv("DISPLAY") != "" || getenv("WAYLAND_DISPLAY") != ""
}

// openBrowser starts xdg-open on url and does not wait for it.
func openBrowser(url string) error {
	cmd := exec.Command("xdg-open", url)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}
