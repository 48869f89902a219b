// Package errdefs defines the error kinds every vers layer shares. Errors are
// wrapped with context (%w) where they happen and classified here, once: the
// daemon turns a kind into an HTTP status and API code, the CLI into an exit
// code. Nothing ever decides on an error's message text.
package errdefs

import (
	"context"
	"errors"
	"strings"

	"vers/api"
)

var (
	ErrInvalid     = errors.New("invalid input")
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrTimeout     = errors.New("timed out")
	ErrUnavailable = errors.New("unavailable")
	// ErrNoSpace: a filesystem (the guest's or the host's) is full.
	ErrNoSpace = errors.New("no space left")
	// ErrUnauthorized: versd over TCP refused a request without its token.
	ErrUnauthorized = errors.New("unauthorized")
)

// kinds pairs each kind with its API code; the code strings live in package
// api, and only there.
var kinds = []struct {
	err  error
	code string
}{
	{ErrInvalid, api.CodeInvalid},
	{ErrNotFound, api.CodeNotFound},
	{ErrConflict, api.CodeConflict},
	{ErrTimeout, api.CodeTimeout},
	{ErrUnavailable, api.CodeUnavailable},
	{ErrNoSpace, api.CodeNoSpace},
	{ErrUnauthorized, api.CodeUnauthorized},
}

// Code returns the API error code for err (see api.Code*).
func Code(err error) string {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.code
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return api.CodeTimeout
	}
	return api.CodeInternal
}

// FromCode is the inverse of Code: it returns the kind an API code stands for,
// or nil for an unknown or internal code.
func FromCode(code string) error {
	for _, k := range kinds {
		if k.code == code {
			return k.err
		}
	}
	return nil
}

// Message is err's text for a user: the kind a message was wrapped with
// (": not found" and the like) is dropped, since the code already says it.
func Message(err error) string {
	msg := err.Error()
	for _, k := range kinds {
		msg = strings.TrimSuffix(msg, ": "+k.err.Error())
	}
	return msg
}
