package daemon

import (
	"vers/api"
	"vers/internal/image"
)

func imageToAPI(s image.Status) api.Image {
	return api.Image{
		Name: s.Name, Kind: string(s.Kind), Status: string(s.State),
		SizeMiB: s.Info.SizeMiB, Built: s.Info.Built, Recipe: s.Info.Recipe,
	}
}
