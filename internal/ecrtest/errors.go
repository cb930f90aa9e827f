package ecrtest

import "errors"

// Errors returned by Start and by the emulator's methods.
var (
	// ErrNotLoopback is returned when a listen address is not on loopback.
	ErrNotLoopback = errors.New("address is not a loopback address")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("emulator closed")
	// ErrBadConfig is returned by Start for invalid options.
	ErrBadConfig = errors.New("invalid emulator configuration")
)
