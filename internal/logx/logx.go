// Package logx holds the logging helper ecr-proxy's packages share.
package logx

import (
	"io"

	"github.com/sirupsen/logrus"
)

// Discard returns a logger that writes nothing: the default of every
// component until it is given the process's logger.
func Discard() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
