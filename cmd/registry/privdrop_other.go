//go:build !linux

package main

import "github.com/spf13/cobra"

// withPrivilegeDrop returns cmd unchanged: dropping root before serving
// (privdrop.go) is implemented on Linux only.
func withPrivilegeDrop(cmd *cobra.Command) *cobra.Command { return cmd }
