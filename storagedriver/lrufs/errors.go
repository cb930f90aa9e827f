package lrufs

import (
	"errors"
	"syscall"
)

// ErrInvalidSize is returned by ParseSize for a string that is not a
// non-negative integer with an optional k, m, g or t suffix.
var ErrInvalidSize = errors.New("invalid size")

// ErrBlobTooLarge is the cause when Move or PutContent refuses a single blob
// larger than the configured maxsize: it is not cached. Through the Driver it
// arrives as the Detail of a storagedriver.Error (which has no Unwrap).
var ErrBlobTooLarge = errors.New("blob larger than maxsize")

// ErrCacheFull is returned by Reserve when the blobs in use (being read or
// written, which eviction skips) and the other reservations leave no room
// under maxsize.
var ErrCacheFull = errors.New("no room under maxsize")

// ErrNoSpace is returned by Reserve when the filesystem lacks the free
// space for the reservation. It matches syscall.ENOSPC with errors.Is.
var ErrNoSpace error = noSpace{}

type noSpace struct{}

func (noSpace) Error() string { return "not enough free space on the filesystem" }

func (noSpace) Is(target error) bool { return target == syscall.ENOSPC }
