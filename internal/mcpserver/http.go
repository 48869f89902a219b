package mcpserver

import (
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"vers/internal/bearer"
)

// HTTPHandler serves srv over the streamable HTTP transport, to requests
// that carry token as a bearer token ("Authorization: Bearer TOKEN"); any
// other request gets a bare 401. refused, if not nil, is told of each
// refusal.
func HTTPHandler(srv *mcp.Server, token string, refused func(*http.Request)) http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	return bearer.Require(token, "vers mcp", refused, h)
}
