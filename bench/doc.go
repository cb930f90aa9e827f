// Command bench compares ways of pulling from Amazon ECR, on loopback,
// against the offline ECR emulator (internal/ecrtest) with a real client
// (go-containerregistry, in process):
//
//   - direct: the client pulls from the emulated ECR itself (the limit);
//   - ecr-proxy: this repository's proxy (cmd/registry), a child process;
//   - distribution: distribution v3.1.2's own proxy mode (bench/cmd/distproxy)
//     with a static token as proxy.username/password, a child process;
//   - nginx: the seed proxy's nginx configuration (nginx.conf.tmpl), a child
//     process.
//
// Each run pulls a large and a small image cold and warm through every
// system, pulls one cold image from many clients at once, times warm
// manifest HEADs by tag and pushes the large image. The report gives each
// figure as the median of the runs with min and max, and ratios computed
// within each run. See README.md.
//
//	go run ./bench -out bench/RESULTS.md
//	go run ./bench -smoke
package main
