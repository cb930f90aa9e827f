package lrufs

import "errors"

// ErrInvalidSize is returned by ParseSize for a string that is not a
// non-negative integer with an optional k, m, g or t suffix.
var ErrInvalidSize = errors.New("invalid size")

// ErrBlobTooLarge is the cause when Move or PutContent refuses a single blob
// larger than the configured maxsize: it is not cached. Through the Driver it
// arrives as the Detail of a storagedriver.Error (which has no Unwrap).
var ErrBlobTooLarge = errors.New("blob larger than maxsize")
