package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/spectora-stream/spectora-stream/stream"
)

// The embedded server's users, one NKey seed file each in the store's
// users/ directory, created at first start with 0600 permissions. The file
// path is the credential: nats.go takes it with nats.NkeyOptionFromSeed and
// the nats CLI with --nkey.
const (
	// AdminUser may do everything: the process itself and the operator
	// commands use it.
	AdminUser = "admin"
	// ReaderUser is for internal services: durable pull consumers on the raw
	// and enriched streams and acks; it can't publish events, read dead
	// letters or change streams.
	ReaderUser = "reader"
	usersDir   = "users"
)

// SeedFile is the path of user's seed file under the store directory.
func SeedFile(storeDir, user string) string {
	return filepath.Join(storeDir, usersDir, user+".nk")
}

// readerPermissions are those of the reader user in deploy/nats/values.yaml.
func readerPermissions() *server.Permissions {
	allow := []string{"$JS.API.INFO"}
	for _, s := range []string{stream.Raw, stream.Enriched} {
		allow = append(allow,
			"$JS.API.STREAM.INFO."+s,
			"$JS.API.CONSUMER.CREATE."+s+".>",
			"$JS.API.CONSUMER.INFO."+s+".*",
			"$JS.API.CONSUMER.MSG.NEXT."+s+".*",
			"$JS.ACK."+s+".>")
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: allow},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// users loads the store's seed files, creating any that is missing, and
// returns the server's users.
func users(storeDir string) ([]*server.NkeyUser, error) {
	dir := filepath.Join(storeDir, usersDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var out []*server.NkeyUser
	for _, name := range []string{AdminUser, ReaderUser} {
		pub, err := loadOrCreate(SeedFile(storeDir, name))
		if err != nil {
			return nil, fmt.Errorf("user %s: %w", name, err)
		}
		u := &server.NkeyUser{Nkey: pub}
		if name == ReaderUser {
			u.Permissions = readerPermissions()
		}
		out = append(out, u)
	}
	return out, nil
}

// loadOrCreate returns the public key of the seed at path, writing a new
// seed there first if there is none.
func loadOrCreate(path string) (string, error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", err
		}
		if seed, err = kp.Seed(); err != nil {
			return "", err
		}
		// O_EXCL: never overwrite a seed another process just wrote.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", err
		}
		if _, err := f.Write(append(seed, '\n')); err != nil {
			_ = f.Close()
			return "", err
		}
		if err := f.Close(); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	kp, err := nkeys.ParseDecoratedNKey(seed)
	if err != nil {
		return "", fmt.Errorf("%s is not an NKey seed: %w", path, err)
	}
	defer kp.Wipe()
	return kp.PublicKey()
}
