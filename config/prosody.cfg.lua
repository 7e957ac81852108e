-- causeway: attach the gateway to Prosody as XEP-0114 external components.
-- Add this to prosody.cfg.lua (global section for the two port lines), with the
-- domains and secrets of your causeway.toml ([irc] / [matrix] domain and secret).
-- No plugin name after Component: that would make it an internal component.
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

-- Optional, XEP-0356 (mod_privilege, from Debian's prosody-modules package): the gateway
-- bookmarks the rooms users join through it and adds the people they talk with to their
-- contacts. Add "privilege" (and "pep", for bookmarks) to the global modules_enabled, the
-- line  modules_enabled = { "privilege" }  to each Component below, and in each VirtualHost
-- whose users use the gateway:
--   privileged_entities = {
--     ["irc.example.org"] = { roster = "set";
--         iq = { ["http://jabber.org/protocol/pubsub"] = "set" } };
--     ["matrix.example.org"] = { roster = "set";
--         iq = { ["http://jabber.org/protocol/pubsub"] = "set" } };
--   }

Component "irc.example.org"
    component_secret = "change-me"

Component "matrix.example.org"
    component_secret = "change-me"
