package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecr-proxy/ecr-proxy/gateway"
)

// newHealthcheckCmd asks the local server's liveness endpoint, for a
// container HEALTHCHECK in an image with no shell or curl. It reads PORT
// (default 5000) and ENABLE_SSL, as the server does without a file.
func newHealthcheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:          "healthcheck",
		Short:        "exit 0 when the proxy on this host (PORT, ENABLE_SSL) answers " + gateway.LivenessPath + ": the image's HEALTHCHECK",
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			port := os.Getenv(envPort)
			if port == "" {
				port = "5000"
			}
			scheme := "http"
			if ssl, err := parseBool(strings.TrimSpace(os.Getenv(envEnableSSL))); err == nil && ssl {
				scheme = "https"
			}
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				// Our own loopback listener: its certificate names the
				// public host, not 127.0.0.1.
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // loopback self-check
			}}
			url := scheme + "://127.0.0.1:" + port + gateway.LivenessPath
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, url, nil) //nolint:gosec // 127.0.0.1, our own port

			if err != nil {
				return err
			}
			resp, err := client.Do(req) //nolint:gosec // 127.0.0.1, our own port
			if err != nil {
				return fmt.Errorf("healthcheck: %w", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
			}
			return nil
		},
	}
}
