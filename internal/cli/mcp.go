package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"vers/internal/bearer"
	"vers/internal/buildid"
	"vers/internal/config"
	"vers/internal/errdefs"
	"vers/internal/mcpserver"
)

type MCPServeOptions struct {
	f      *Factory
	Client clientFunc
	// HTTP is --http: serve the streamable HTTP transport there instead of stdio.
	HTTP      string
	TokenFile string
	// Dir is --dir: the directory to act in instead of the working one.
	Dir    string
	listen config.Listen
}

// NewCmdMCP is `vers mcp`, whose one subcommand serves the CLI's verbs to
// Model Context Protocol clients.
func NewCmdMCP(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Serve vers to agents over the Model Context Protocol",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdMCPServe(f, nil))
	return cmd
}

func NewCmdMCPServe(f *Factory, runF func(context.Context, *MCPServeOptions) error) *cobra.Command {
	opts := &MCPServeOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:   "serve [--http ADDR:PORT [--token-file FILE]]",
		Short: "Serve the verbs as the tools of an MCP server, on stdio or HTTP",
		Long: `Serve status, run, execute, branch, kill, checkout, info, cp, commit,
run-commit, commits, tags, pause, resume, sleep, wake and restore as the tools
of a Model Context Protocol server, on standard input and output: an MCP
client starts ` + "`vers mcp serve`" + ` itself. Tools act as the commands do in the
directory the server was started in: a VM left out is HEAD of the project
there, and run, run-commit, checkout and branch with checkout move that HEAD.
A failed call is a tool result with isError set and the text
{"error":{"code":"not_found","message":"..."}}, with the codes of
` + "`--format json`" + `.

With --http ADDR:PORT it serves the streamable HTTP transport there instead
(at any path), to requests that carry a bearer token
("Authorization: Bearer TOKEN"); any other request gets 401. The token is
VERS_MCP_TOKEN when that is set and --token-file is not given; otherwise the
one in --token-file (default $VERS_HOME/mcp.token), made on first use with
mode 0600. Whoever has it runs commands in the VMs and, with cp, reads and
writes this host's files as you. Prefer 127.0.0.1: an address the network
reaches must be written out (0.0.0.0:PORT), and the traffic is not encrypted.

Register it with an MCP client as a server of command "vers" and arguments
["mcp", "serve"], started in the project's directory, or with
["mcp", "serve", "--dir", "/path/to/project"]: --dir is the directory to
act in (its project's HEAD, and cp's relative host paths) instead.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("token-file") && opts.HTTP == "" {
				return fmt.Errorf("--token-file is the token of --http; give --http ADDR:PORT too: %w", errUsage)
			}
			if opts.HTTP != "" {
				l, err := config.ParseListen(opts.HTTP)
				if err != nil {
					return fmt.Errorf("--http %w", err)
				}
				opts.listen = l
			}
			if !cmd.Flags().Changed("token-file") {
				opts.TokenFile = "" // VERS_MCP_TOKEN, if set, comes before the default file
			}
			if opts.Dir != "" {
				dir, err := filepath.Abs(opts.Dir)
				if err != nil {
					return fmt.Errorf("--dir: %w", err)
				}
				if st, err := os.Stat(dir); err != nil || !st.IsDir() {
					return fmt.Errorf("--dir %s is no directory; give the project's directory: %w", opts.Dir, errdefs.ErrInvalid)
				}
				f.WorkDir = dir
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runMCPServe(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.HTTP, "http", "", "serve the streamable HTTP transport at `ADDR:PORT` (such as 127.0.0.1:7780) instead of stdio")
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "act in the project of `DIR` (HEAD, cp's relative host paths) instead of the working directory")
	cmd.Flags().StringVar(&opts.TokenFile, "token-file", f.Layout.MCPToken(), "with --http: the `FILE` of the bearer token clients must send (made with mode 0600 if missing)")
	return cmd
}

func runMCPServe(ctx context.Context, o *MCPServeOptions) error {
	verbs := newMCPVerbs(o.f, o.Client)
	verbs.life = ctx
	defer verbs.closeTunnels()
	srv := mcpserver.New(verbs, mcpserver.Options{Version: version(), Code: errorCode, Message: message})
	if o.HTTP == "" {
		err := srv.Run(ctx, &mcp.IOTransport{Reader: io.NopCloser(o.f.In), Writer: nopWriteCloser{o.f.Out}})
		if ctx.Err() != nil {
			return fmt.Errorf("vers mcp serve stopped: %w", errCancelled)
		}
		return err
	}
	return serveMCPHTTP(ctx, o, srv)
}

// serveMCPHTTP serves srv at --http until ctx ends.
func serveMCPHTTP(ctx context.Context, o *MCPServeOptions, srv *mcp.Server) error {
	token, from, err := o.token()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen.Addr)
	if err != nil {
		return fmt.Errorf("--http: %v; give another address: %w", err, errdefs.ErrUnavailable)
	}
	if !o.listen.Loopback {
		fmt.Fprintf(o.f.ErrOut, "vers mcp: SERVING TO THE NETWORK at %s: whoever has the token runs commands in every VM and reads and writes this host's files as you, and the traffic is not encrypted\n", ln.Addr())
	}
	fmt.Fprintf(o.f.ErrOut, "vers mcp: serving MCP at http://%s/ to requests with the bearer token %s\n", ln.Addr(), from)
	hs := &http.Server{Handler: mcpserver.HTTPHandler(srv, token, nil), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	err = hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return fmt.Errorf("vers mcp serve stopped: %w", errCancelled)
	}
	return err
}

// token is the bearer token of --http, and where it is from (for the
// message; never the token itself).
func (o *MCPServeOptions) token() (token, from string, err error) {
	if o.TokenFile == "" && o.f.MCPToken != "" {
		tok := strings.TrimSpace(o.f.MCPToken)
		if len(tok) < bearer.MinLen {
			return "", "", fmt.Errorf("VERS_MCP_TOKEN is shorter than %d characters; give a longer one (such as `openssl rand -hex 32`), or unset it to use the token file: %w", bearer.MinLen, errdefs.ErrInvalid)
		}
		return tok, "of VERS_MCP_TOKEN", nil
	}
	path := o.TokenFile
	if path == "" {
		path = o.f.Layout.MCPToken()
	}
	tok, err := bearer.Load(path)
	if err != nil {
		return "", "", err
	}
	return tok, "in " + path, nil
}

// version is what initialize reports of the server: its build.
func version() string {
	id, err := buildid.Self()
	if err != nil || id == "" {
		return "unknown"
	}
	return shortID(id)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
