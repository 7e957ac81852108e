//! IRC commands as types: the verb of every line, parsed once from its command token, and
//! the numeric replies by name. Nothing in the session dispatches on a command's text.

/// The command of a line: the ones the bridge sends or acts on, a numeric reply, or another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub enum Verb {
    Privmsg,
    Notice,
    Join,
    Part,
    Kick,
    Quit,
    Nick,
    Mode,
    Topic,
    Ping,
    Pong,
    Error,
    Cap,
    Authenticate,
    Pass,
    User,
    List,
    Chghost,
    Away,
    Account,
    Batch,
    Tagmsg,
    /// A three-digit numeric reply (see [`numeric`]).
    Numeric(u16),
    /// Anything else (the line's `command` holds its text).
    #[default]
    Other,
}

impl Verb {
    /// The verb of an upper-cased command token.
    pub fn parse(token: &str) -> Verb {
        match token {
            "PRIVMSG" => Verb::Privmsg,
            "NOTICE" => Verb::Notice,
            "JOIN" => Verb::Join,
            "PART" => Verb::Part,
            "KICK" => Verb::Kick,
            "QUIT" => Verb::Quit,
            "NICK" => Verb::Nick,
            "MODE" => Verb::Mode,
            "TOPIC" => Verb::Topic,
            "PING" => Verb::Ping,
            "PONG" => Verb::Pong,
            "ERROR" => Verb::Error,
            "CAP" => Verb::Cap,
            "AUTHENTICATE" => Verb::Authenticate,
            "PASS" => Verb::Pass,
            "USER" => Verb::User,
            "LIST" => Verb::List,
            "CHGHOST" => Verb::Chghost,
            "AWAY" => Verb::Away,
            "ACCOUNT" => Verb::Account,
            "BATCH" => Verb::Batch,
            "TAGMSG" => Verb::Tagmsg,
            digits if digits.len() == 3 => digits.parse().map_or(Verb::Other, Verb::Numeric),
            _ => Verb::Other,
        }
    }

    /// The command token of a verb the bridge sends (`None` for numerics and others).
    pub fn token(self) -> Option<&'static str> {
        Some(match self {
            Verb::Privmsg => "PRIVMSG",
            Verb::Notice => "NOTICE",
            Verb::Join => "JOIN",
            Verb::Part => "PART",
            Verb::Kick => "KICK",
            Verb::Quit => "QUIT",
            Verb::Nick => "NICK",
            Verb::Mode => "MODE",
            Verb::Topic => "TOPIC",
            Verb::Ping => "PING",
            Verb::Pong => "PONG",
            Verb::Error => "ERROR",
            Verb::Cap => "CAP",
            Verb::Authenticate => "AUTHENTICATE",
            Verb::Pass => "PASS",
            Verb::User => "USER",
            Verb::List => "LIST",
            Verb::Chghost => "CHGHOST",
            Verb::Away => "AWAY",
            Verb::Account => "ACCOUNT",
            Verb::Batch => "BATCH",
            Verb::Tagmsg => "TAGMSG",
            Verb::Numeric(_) | Verb::Other => return None,
        })
    }
}

/// Numeric replies the bridge acts on.
#[allow(missing_docs)]
pub mod numeric {
    pub const RPL_WELCOME: u16 = 1;
    pub const RPL_ISUPPORT: u16 = 5;
    /// The first of the connect-time statistics (250–266), which are not shown.
    pub const RPL_STATSCONN: u16 = 250;
    /// The last of the connect-time statistics.
    pub const RPL_GLOBALUSERS: u16 = 266;
    pub const RPL_LISTSTART: u16 = 321;
    pub const RPL_LIST: u16 = 322;
    pub const RPL_LISTEND: u16 = 323;
    pub const RPL_NOTOPIC: u16 = 331;
    pub const RPL_TOPIC: u16 = 332;
    pub const RPL_TOPICWHOTIME: u16 = 333;
    pub const RPL_NAMREPLY: u16 = 353;
    pub const RPL_ENDOFNAMES: u16 = 366;
    pub const RPL_ENDOFMOTD: u16 = 376;
    pub const ERR_NOSUCHNICK: u16 = 401;
    pub const ERR_NOSUCHCHANNEL: u16 = 403;
    pub const ERR_CANNOTSENDTOCHAN: u16 = 404;
    pub const ERR_TOOMANYCHANNELS: u16 = 405;
    pub const ERR_NOMOTD: u16 = 422;
    pub const ERR_NONICKNAMEGIVEN: u16 = 431;
    pub const ERR_ERRONEUSNICKNAME: u16 = 432;
    pub const ERR_NICKNAMEINUSE: u16 = 433;
    pub const ERR_NICKCOLLISION: u16 = 436;
    pub const ERR_UNAVAILRESOURCE: u16 = 437;
    pub const ERR_PASSWDMISMATCH: u16 = 464;
    pub const ERR_YOUREBANNEDCREEP: u16 = 465;
    pub const ERR_CHANNELISFULL: u16 = 471;
    pub const ERR_INVITEONLYCHAN: u16 = 473;
    pub const ERR_BANNEDFROMCHAN: u16 = 474;
    pub const ERR_BADCHANNELKEY: u16 = 475;
    pub const ERR_BADCHANMASK: u16 = 476;
    pub const ERR_NEEDREGGEDNICK: u16 = 477;
    pub const RPL_SASLSUCCESS: u16 = 903;
    pub const ERR_SASLFAIL: u16 = 904;
    pub const ERR_SASLTOOLONG: u16 = 905;
    pub const ERR_SASLABORTED: u16 = 906;
    pub const ERR_SASLALREADY: u16 = 907;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_verb_parses_back_from_its_token() {
        for verb in [
            Verb::Privmsg,
            Verb::Notice,
            Verb::Join,
            Verb::Part,
            Verb::Kick,
            Verb::Quit,
            Verb::Nick,
            Verb::Mode,
            Verb::Topic,
            Verb::Ping,
            Verb::Pong,
            Verb::Error,
            Verb::Cap,
            Verb::Authenticate,
            Verb::Pass,
            Verb::User,
            Verb::List,
            Verb::Chghost,
            Verb::Away,
            Verb::Account,
            Verb::Batch,
            Verb::Tagmsg,
        ] {
            assert_eq!(Verb::parse(verb.token().unwrap()), verb);
        }
        assert_eq!(Verb::parse("001"), Verb::Numeric(numeric::RPL_WELCOME));
        assert_eq!(
            Verb::parse("433"),
            Verb::Numeric(numeric::ERR_NICKNAMEINUSE)
        );
        assert_eq!(Verb::parse("WALLOPS"), Verb::Other);
        assert_eq!(Verb::parse("1X3"), Verb::Other);
    }
}
