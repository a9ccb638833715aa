//! gaga-boards: camera capture, face tracking, kiosk display and board profiles.
