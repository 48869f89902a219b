// Package errdefs defines the error kinds every vers layer shares. Errors are
// wrapped with context (%w) where they happen and classified here, once: the
// daemon turns a kind into an HTTP status and API code, the CLI into an exit
// code. Nothing ever decides on an error's message text.
package errdefs

import (
	"context"
	"errors"
	"strings"
)

var (
	ErrInvalid     = errors.New("invalid input")
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrTimeout     = errors.New("timed out")
	ErrUnavailable = errors.New("unavailable")
	// ErrNoSpace: a filesystem (the guest's or the host's) is full.
	ErrNoSpace = errors.New("no space left")
)

// Code returns the API error code for err (see api.Code*).
func Code(err error) string {
	switch {
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrNoSpace):
		return "no_space"
	}
	return "internal"
}

// FromCode is the inverse of Code: it returns the kind an API code stands for,
// or nil for an unknown or internal code.
func FromCode(code string) error {
	switch code {
	case "invalid":
		return ErrInvalid
	case "not_found":
		return ErrNotFound
	case "conflict":
		return ErrConflict
	case "timeout":
		return ErrTimeout
	case "unavailable":
		return ErrUnavailable
	case "no_space":
		return ErrNoSpace
	}
	return nil
}

// Message is err's text for a user: the kind a message was wrapped with
// (": not found" and the like) is dropped, since the code already says it.
func Message(err error) string {
	msg := err.Error()
	for _, kind := range []error{ErrInvalid, ErrNotFound, ErrConflict, ErrTimeout, ErrUnavailable, ErrNoSpace} {
		msg = strings.TrimSuffix(msg, ": "+kind.Error())
	}
	return msg
}
