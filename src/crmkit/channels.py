"""Interaction channels: an open vocabulary with built-in names that plugins extend."""

from __future__ import annotations

from typing import ClassVar

import attrs

from crmkit._validation import check_identifier, of_type

__all__ = ["Channel", "ChannelType", "BUILTIN_CHANNELS"]


class Channel(str):
    """The name of a channel (``Channel.EMAIL`` or ``Channel("whatsapp")`` once a plugin registers it)."""

    PHONE: ClassVar[Channel]
    FAX: ClassVar[Channel]
    EMAIL: ClassVar[Channel]
    WEB: ClassVar[Channel]
    CHAT: ClassVar[Channel]
    SMS: ClassVar[Channel]
    MEETING: ClassVar[Channel]
    LETTER: ClassVar[Channel]
    SOCIAL: ClassVar[Channel]
    IN_PERSON: ClassVar[Channel]

    __slots__ = ()

    def __new__(cls, value: str) -> Channel:
        return super().__new__(cls, check_identifier("channel", value))

    def __repr__(self) -> str:
        return f"Channel({str(self)!r})"


for _name in ("phone", "fax", "email", "web", "chat", "sms", "meeting", "letter", "social", "in_person"):
    setattr(Channel, _name.upper(), Channel(_name))


@attrs.frozen
class ChannelType:
    """A channel a CRM accepts, registered through the ``crmkit_channels`` hook."""

    name: Channel = attrs.field(converter=Channel)
    description: str = attrs.field(default="", validator=of_type(str, "string"))
    #: Whether a contact point's consent is needed before outbound contact on this channel.
    needs_consent: bool = attrs.field(default=True, validator=of_type(bool))


BUILTIN_CHANNELS: tuple[ChannelType, ...] = (
    ChannelType(Channel.PHONE, "Telephone call"),
    ChannelType(Channel.FAX, "Fax"),
    ChannelType(Channel.EMAIL, "E-mail"),
    ChannelType(Channel.WEB, "Web site or web form", needs_consent=False),
    ChannelType(Channel.CHAT, "Live chat"),
    ChannelType(Channel.SMS, "Text message"),
    ChannelType(Channel.MEETING, "Scheduled meeting", needs_consent=False),
    ChannelType(Channel.LETTER, "Postal letter"),
    ChannelType(Channel.SOCIAL, "Social media"),
    ChannelType(Channel.IN_PERSON, "Face to face", needs_consent=False),
)
