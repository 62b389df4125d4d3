; NSIS installer for the Windows bundle (dist\lama-desktop from installers/lama-desktop.spec).
; Per-user install (no administrator rights): %LOCALAPPDATA%\Programs\Lama Desktop, a Start menu
; and desktop shortcut, an uninstaller in Apps & features, and (unticked) the agent at log-on.
;   makensis /DVERSION=0.1.0 /DBUNDLE=dist\lama-desktop /DOUTFILE=dist\LamaDesktop-0.1.0-setup.exe
;            installers\windows\lama-desktop.nsi
Unicode true
!include "MUI2.nsh"

!ifndef VERSION
  !define VERSION "0.1.0"
!endif
!ifndef BUNDLE
  !define BUNDLE "..\..\dist\lama-desktop"
!endif
!ifndef OUTFILE
  !define OUTFILE "..\..\dist\LamaDesktop-${VERSION}-setup.exe"
!endif
!define APP "Lama Desktop"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\LamaDesktop"

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\${APP}"
InstallDirRegKey HKCU "Software\LamaDesktop" "InstallDir"
RequestExecutionLevel user
SetCompressor /SOLID lzma
!ifdef ICON
  !define MUI_ICON "${ICON}"
  !define MUI_UNICON "${ICON}"
!endif

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!define MUI_FINISHPAGE_RUN "$INSTDIR\lama-desktop.exe"
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Section "${APP} (required)" SecApp
  SectionIn RO
  ; A previous version's files go first: PyInstaller's _internal must not mix two releases.
  RMDir /r "$INSTDIR\_internal"
  SetOutPath "$INSTDIR"
  File /r "${BUNDLE}\*.*"
  CreateDirectory "$SMPROGRAMS\${APP}"
  CreateShortcut "$SMPROGRAMS\${APP}\${APP}.lnk" "$INSTDIR\lama-desktop.exe"
  CreateShortcut "$DESKTOP\${APP}.lnk" "$INSTDIR\lama-desktop.exe"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  WriteRegStr HKCU "Software\LamaDesktop" "InstallDir" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "Lama Desktop"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\lama-desktop.exe"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1
SectionEnd

; Off unless ticked: lend this PC to other desktops (pair with `lama-agent pair`).
Section /o "Start lama-agent at log-on" SecAgent
  CreateShortcut "$SMSTARTUP\Lama Agent.lnk" "$INSTDIR\lama-agent.exe" "--workers auto" \
    "$INSTDIR\lama-agent.exe" 0 SW_SHOWMINIMIZED
SectionEnd

Section "Uninstall"
  Delete "$SMSTARTUP\Lama Agent.lnk"
  Delete "$DESKTOP\${APP}.lnk"
  RMDir /r "$SMPROGRAMS\${APP}"
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\lama-desktop.exe"
  Delete "$INSTDIR\lama-agent.exe"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINST_KEY}"
  DeleteRegKey HKCU "Software\LamaDesktop"
SectionEnd
