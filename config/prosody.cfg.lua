-- causeway: attach the gateway to Prosody as XEP-0114 external components.
-- Add this to prosody.cfg.lua (global section for the two port lines), with the
-- domains and secrets of your causeway.toml ([irc] / [matrix] domain and secret).
-- No plugin name after Component: that would make it an internal component.
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

Component "irc.example.org"
    component_secret = "change-me"

Component "matrix.example.org"
    component_secret = "change-me"
